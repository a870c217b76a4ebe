"""Segmenting a cohort: the cases of many inputs (`inputs`) and the share of them one process takes
(`shards`)."""
