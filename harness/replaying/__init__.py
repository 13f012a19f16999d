"""Replaying goldens: the run request, its schedule over shards and crash-safe workers, and the
replay of one golden set (load, run, judge, record) into Result records."""
