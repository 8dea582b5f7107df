"""The shared checks: every backend session runs these modules unchanged.

Run them with ``hfmatrix run`` or ``pytest --pyargs hfmatrix.suites --hfm ...`` (the plugin is opt-in).
"""
