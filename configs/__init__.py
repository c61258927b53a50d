"""The shipped configs and presets, installed as the package ``aihf.configs`` (see ``aihf.shipped``)."""
