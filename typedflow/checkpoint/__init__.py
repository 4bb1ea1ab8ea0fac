"""Checkpoint backends behind one contract (see ``typedflow.checkpoint.base``)."""
