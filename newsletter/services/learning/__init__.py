"""Learning from readers: feedback marks, per-reader models fitted from them, library import, and the
ranking evaluation (`eval_ranking`) that measures all of it."""
