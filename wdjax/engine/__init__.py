"""The engine: models and adapters, the pure step/epoch engine, metrics, compiled programs,
devices and the compile cache. Traced code here imports only the core above it."""
