"""Built-in methods: importing this package imports every module in it, and each module
registers its methods with ``@register_method`` (see ``bench.interface.METHODS``)."""

from importlib import import_module
from pkgutil import iter_modules

for _module in iter_modules(__path__):
    if not _module.name.startswith("_"):
        import_module(f"{__name__}.{_module.name}")
