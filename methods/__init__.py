"""Built-in methods; importing this package registers them (see ``bench.interface.METHODS``)."""

from methods import late_fusion, moddrop, unimodal

__all__ = ["late_fusion", "moddrop", "unimodal"]
