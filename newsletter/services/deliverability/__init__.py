"""Deliverability: VERP return paths, the bounce mailbox, ESP events, the shared send rate, the warm-up
cap and the brake. The trust rules for what a bounce or complaint may do live here, in one place."""
