"""``make bench``: fxnb's performance figures, each beside a floor measured in the same run.

``python -m fxnb.bench [--quick] [--out bench-results.json]`` prints one table and
writes the same figures to JSON. Not a test: nothing asserts a time (the smoke
test only checks that every figure has a floor and a ratio). Each module is one
measurement and documents its method and its floor:

1. ``cmd_latency``: command file arrival -> final row, real ``fxnb monitor``, 1,000+ open positions;
2. ``poll_cycle``: ``Engine.poll()`` at 100 / 1,000 / 10,000 open positions, rules off and live;
3. ``close_all``: an ``all`` command closing 1,000 positions, in-process;
4. ``dashboard``: the console's per-second ``Reader`` queries on a large history;
5. ``idle``: a real monitor's idle CPU and resident memory.

The machine may be shared: every figure is a median or percentile over repeats
and says how many samples it has.
"""
