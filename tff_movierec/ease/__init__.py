"""Federated EASE: item-item Gram matrices summed across clients, solved on the server."""
