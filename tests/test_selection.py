"""wdjax.analysis.selection's estimators: the vertex of a sampled curve and a slope fit, by hand."""

import numpy as np
import pytest

from wdjax.analysis import selection


@pytest.mark.parametrize("x_star", [0.3, -1.37, 0.0])
def test_vertex_of_an_exact_parabola(x_star):
    x = np.linspace(-3, 3, 13)  # step 0.5
    loss = 2.0 * (x - x_star) ** 2 + 0.7
    got, edge = selection.vertex(x, loss)
    assert not edge and got == pytest.approx(x_star, abs=1e-12)


def test_vertex_uses_only_the_minimum_and_its_neighbours():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    loss = np.array([100.0, 3.0, 1.0, 2.0, -50.0])  # global min at the end: an edge
    assert selection.vertex(x, loss) == (pytest.approx(np.nan, nan_ok=True), True)
    loss = np.array([100.0, 3.0, 1.0, 2.0, 80.0])
    # parabola through (1, 3), (2, 1), (3, 2): y = 1.5x² − 6.5x + 8 → vertex 6.5 / 3
    assert selection.vertex(x, loss) == (pytest.approx(6.5 / 3), False)


@pytest.mark.parametrize("slope", [-2.0, -1.0, 0.0, 0.5])
def test_fit_slope_recovers_an_exact_power_law(slope):
    log_lr = np.log10(np.geomspace(1e-4, 1e-1, 7))
    log_lam = 0.37 + slope * log_lr
    assert selection.fit_slope(log_lr, log_lam) == pytest.approx(slope, abs=1e-12)
    log_lam[[0, 6]] = np.nan  # edge cells are left out
    assert selection.fit_slope(log_lr, log_lam) == pytest.approx(slope, abs=1e-12)
    log_lam[1:5] = np.nan  # 1 point left: no slope
    assert np.isnan(selection.fit_slope(log_lr, log_lam))


def test_edge_cells_at_either_end_or_next_to_a_diverged_value():
    x = np.arange(5.0)
    assert selection.vertex(x, [0.5, 1, 2, 3, 4])[1]  # minimum at the low end
    assert selection.vertex(x, [4, 3, 2, 1, 0.5])[1]  # at the high end
    assert selection.vertex(x, [4, np.nan, 0.5, 1, 2])[1]  # neighbour diverged (NaN)
    assert selection.vertex(x, [4, 1, 0.5, np.inf, 2])[1]  # neighbour diverged (inf)
    assert not selection.vertex(x, [np.nan, 1, 0.5, 1, np.nan])[1]  # diverged, not a neighbour
    assert selection.vertex(x, [1, 1, 1, 1, 1])[1]  # flat: first index, an edge
    assert selection.vertex(x, [2, 1, 1, 1, 0.5])[1]
    # a tie: the first minimum (index 1) and its neighbours (0, 2), (1, 1), (2, 1): vertex 1.5
    assert selection.vertex(x, [2, 1, 1, 1, 2]) == (1.5, False)
