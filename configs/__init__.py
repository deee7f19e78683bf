"""Shipped configurations, installed as ``lsr.configs`` so ``--config NAME`` works from any directory."""
