"""Backend discovery through entry points, and binding a backend and middleware to the hooks.

Backends register in the entry-point group :data:`ENTRY_POINT_GROUP` as
``name = "module:factory"``, one name per URL scheme they serve. Listing them reads only
distribution metadata; a backend's module is imported only when that backend is chosen, so a
broken plugin never breaks another.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .capabilities import Capability
from .errors import BackendLoadError, ConfigurationError, UnknownBackendError
from .hookspecs import hookimpl

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendFactory",
    "BackendInfo",
    "HookDispatch",
    "bind_plugins",
    "installed_backends",
    "load_backend_factory",
]

ENTRY_POINT_GROUP = "sessionstore.backends"

BackendFactory = Callable[..., object]
"""``factory(spec: str, *, namespace: str, **options) -> backend``: returns an object whose
``@hookimpl`` methods implement :mod:`sessionstore.hookspecs` for that one namespace."""

# Only for the hint in UnknownBackendError: the extra of the core (core/pyproject.toml) that
# installs each of our own backends, the same as its distribution sessionstore-<extra>.
_KNOWN_EXTRAS = {
    "memory": "memory",
    "sqlite": "sqlite",
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
}


@dataclass(frozen=True)
class BackendInfo:
    """An installed backend, known from metadata alone (nothing imported)."""

    name: str
    """The name and URL scheme it answers to."""
    value: str
    """Its entry point, ``module:factory``."""
    distribution: str | None
    version: str | None


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def _info(ep: metadata.EntryPoint) -> BackendInfo:
    dist = ep.dist
    return BackendInfo(
        name=ep.name,
        value=ep.value,
        distribution=dist.name if dist is not None else None,
        version=dist.version if dist is not None else None,
    )


def installed_backends() -> dict[str, BackendInfo]:
    """Return the installed backends by name, reading only package metadata."""
    return {ep.name: _info(ep) for ep in _entry_points()}


def load_backend_factory(name: str) -> BackendFactory:
    """Import and return the factory registered under ``name``.

    Raises :class:`~sessionstore.UnknownBackendError` (naming the installed backends and the
    distribution to install) when nothing is registered under ``name``, and
    :class:`~sessionstore.BackendLoadError` when its import fails, when two distributions claim the
    name, or when the entry point is not callable.
    """
    candidates = [ep for ep in _entry_points() if ep.name == name]
    if not candidates:
        installed = {ep.name for ep in _entry_points()}
        raise UnknownBackendError(name, installed, _install_hint(name))
    if len({ep.value for ep in candidates}) > 1:
        owners = ", ".join(f"{_info(ep).distribution} ({ep.value})" for ep in candidates)
        raise BackendLoadError(name, f"registered by more than one distribution: {owners}")
    ep = candidates[0]
    try:
        factory = ep.load()
    except Exception as exc:
        raise BackendLoadError(
            name,
            f"importing {ep.value} from {_info(ep).distribution} failed: "
            f"{type(exc).__name__}: {exc}",
        ) from exc
    if not callable(factory):
        raise BackendLoadError(name, f"entry point {ep.value} is not callable")
    return factory  # type: ignore[no-any-return]


def _install_hint(name: str) -> str:
    extra = _KNOWN_EXTRAS.get(name)
    if extra is not None:
        # The quotes keep a shell's globbing off the brackets (zsh fails without them).
        return f"install it with: pip install 'sessionstore[{extra}]'"
    return (
        f"install the distribution that provides it (by convention sessionstore-{name}), "
        f"which registers {name!r} in the entry-point group {ENTRY_POINT_GROUP!r}"
    )


def bind_plugins(
    backend: object, backend_name: str, middleware: Iterable[object]
) -> pluggy.PluginManager:
    """Return a plugin manager with ``backend`` and ``middleware`` registered and checked.

    Raises :class:`~sessionstore.BackendLoadError` naming the backend and each hook that is
    missing, misnamed or an ``async def`` where a plain one is required, or naming unknown
    declared capabilities; and :class:`~sessionstore.ConfigurationError` for a middleware that
    is not a wrapper.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    _register(pm, backend, backend_name, backend_name)
    problems = []
    immediate = []
    for name in _hook_names(pm):
        impls = [i for i in getattr(pm.hook, name).get_hookimpls() if not i.wrapper]
        if not impls:
            if name not in hookspecs.OPTIONAL_HOOKS:
                problems.append(f"missing hook {name}")
            continue
        is_async = inspect.iscoroutinefunction(impls[0].function)
        if name in hookspecs.SYNC_HOOKS and is_async:
            problems.append(f"hook {name} must be a plain def, not an async def")
        elif name not in hookspecs.SYNC_HOOKS and not is_async:
            immediate.append(name)
    if problems:
        raise BackendLoadError(backend_name, "; ".join(problems))
    middleware = tuple(middleware)
    if middleware and immediate:
        # Innermost of the wrappers: middleware always receive a coroutine from ``yield``.
        _register(pm, _ImmediateAsAwaitable(immediate), "plain-def hooks", backend_name)
    for index, plugin in enumerate(middleware):
        label = f"{type(plugin).__name__} (middleware #{index + 1})"
        _register(pm, plugin, label, backend_name)
        for caller in pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.wrapper:
                    raise ConfigurationError(
                        f"{label}: its hook {caller.name} must be declared with "
                        "@hookimpl(wrapper=True); middleware wrap the backend, never replace it"
                    )
    capabilities_of(pm, backend_name)  # validates the declaration now rather than on first use
    return pm


class _ImmediateAsAwaitable:
    """Wrappers turning the results of a backend's plain-def operation hooks into coroutines."""

    def __init__(self, hook_names: Iterable[str]) -> None:
        for name in hook_names:
            setattr(self, name, _awaitable_wrapper(name))


def _awaitable_wrapper(name: str) -> Callable[..., Any]:
    def wrap() -> Generator[None, Any, Any]:
        try:
            outcome = yield
        except Exception as exc:  # raised by the plain def: middleware see it when they await
            return _raise(exc)
        return outcome if inspect.iscoroutine(outcome) else _ready(outcome)

    wrap.__name__ = wrap.__qualname__ = name
    return hookimpl(wrapper=True)(wrap)


async def _ready(value: Any) -> Any:
    return value


async def _raise(exc: Exception) -> Any:
    raise exc


def _register(pm: pluggy.PluginManager, plugin: object, label: str, backend_name: str) -> None:
    try:
        pm.register(plugin, name=f"{label}@{id(plugin)}")
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise BackendLoadError(backend_name, f"{label}: {exc}") from exc
    except ValueError as exc:  # pluggy: this object is already registered (given twice)
        raise ConfigurationError(f"{label}: {exc}") from exc


def _hook_names(pm: pluggy.PluginManager) -> list[str]:
    return [name for name in vars(pm.hook) if not name.startswith("_")]


def capabilities_of(pm: pluggy.PluginManager, backend_name: str) -> dict[Capability, str]:
    """Return the capabilities the bound backend lacks, with their reasons."""
    declared: Mapping[str, str] | None = pm.hook.store_capabilities()
    if declared is not None and not isinstance(declared, Mapping):
        raise BackendLoadError(
            backend_name,
            f"hook store_capabilities must return a mapping of capability names to reasons, "
            f"not {type(declared).__name__}",
        )
    missing: dict[Capability, str] = {}
    for name, reason in (declared or {}).items():
        try:
            missing[Capability(name)] = str(reason)
        except ValueError:
            known = ", ".join(c.value for c in Capability)
            raise BackendLoadError(
                backend_name, f"declares unknown capability {name!r} (known: {known})"
            ) from None
    if Capability.EVENT_NOTIFICATIONS not in missing and not pm.hook.event_watch.get_hookimpls():
        missing[Capability.EVENT_NOTIFICATIONS] = (
            f"backend {backend_name} offers no event_watch hook: watch_events polls the store"
        )
    return missing


class HookDispatch:
    """The hooks of one store as plain callables taking the spec's arguments positionally.

    pluggy's call machinery costs about 3 microseconds per call, as much as decoding a session.
    When a hook has exactly one implementation and no wrapper, calling that implementation
    directly is what pluggy would do, so the fast path changes no behaviour; with middleware the
    call goes through pluggy. Build a new dispatch after registering a plugin.

    A call returns a coroutine, to be awaited, or, from a backend's plain-def hook, the result
    itself; the caller awaits the outcome only if it is a coroutine.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        for name in _hook_names(pm):
            setattr(self, name, _direct_or_pluggy(getattr(pm.hook, name)))

    def __getattr__(self, name: str) -> Callable[..., Any]:  # for type checkers; never reached
        raise AttributeError(name)


def _direct_or_pluggy(caller: pluggy.HookCaller) -> Callable[..., Any]:
    spec_args = tuple(caller.spec.argnames) if caller.spec is not None else ()
    impls = caller.get_hookimpls()
    if len(impls) != 1 or impls[0].wrapper or impls[0].hookwrapper:

        async def through_pluggy(*args: Any) -> Any:
            return await caller(**dict(zip(spec_args, args, strict=True)))

        return through_pluggy if caller.name not in hookspecs.SYNC_HOOKS else _keywords(caller)
    impl = impls[0]
    if tuple(impl.argnames) == spec_args:
        return impl.function
    # The implementation takes a subset of the spec's arguments, as pluggy allows.
    function = impl.function
    positions = [spec_args.index(a) for a in impl.argnames]
    return lambda *args: function(*[args[i] for i in positions])


def _keywords(caller: pluggy.HookCaller) -> Callable[..., Any]:
    spec_args = tuple(caller.spec.argnames) if caller.spec is not None else ()
    return lambda *args: caller(**dict(zip(spec_args, args, strict=True)))
