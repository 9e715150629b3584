"""What this server answers for, as ListModels and /v1/models tell it: the truth, not a guess.

The base model; every adapter an alias names (with the aliases, canary challengers included); and
every adapter loaded in the engine now even if no alias names it any more (a version asked for by
number, or one kept while idle), each with its registered model, version, base model and whether its
weights are in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmops.serving.deployments import ModelRouter
from llmops.serving.routing import Deployment


@dataclass
class ServedModel:
    name: str
    model: str
    version: str
    base_model: str
    is_adapter: bool
    is_default: bool
    loaded: bool
    aliases: list[str] = field(default_factory=list)


def served_models(router: ModelRouter) -> list[ServedModel]:
    """The base model first, then adapters by name."""
    engine = router.engine
    entries = [
        ServedModel(
            name=router.served_name,
            model="",
            version=router.served_name,
            base_model=router.served_name,
            is_adapter=False,
            is_default=True,
            loaded=engine.is_running,
        )
    ]
    loaded = engine.adapters
    deployments: dict[str, Deployment] = {}
    aliases = router.aliases_by_adapter()
    for _model, _alias, d in router.table.all_aliases():
        deployments.setdefault(d.adapter_name, d)
    for name in loaded:
        if name not in deployments:
            d = router.table.deployment_of(name)
            if d is not None:
                deployments[name] = d
    for name in sorted(deployments):
        d = deployments[name]
        entries.append(
            ServedModel(
                name=name,
                model=d.model,
                version=str(d.version),
                base_model=d.base_model,
                is_adapter=True,
                is_default=False,
                loaded=name in loaded,
                aliases=sorted(aliases.get(name, [])),
            )
        )
    return entries
