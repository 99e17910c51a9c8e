"""The API's blueprints: generation (/generate, /stream), models (/load_model, /model_status), meta."""
