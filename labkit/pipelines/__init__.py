"""diffusers, and nothing else: loading pipelines, applying memory strategies, calling them."""
