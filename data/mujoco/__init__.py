"""The shipped MuJoCo expert data, installed as the package ``aihf.mujoco_data`` (see ``aihf.shipped``)."""
