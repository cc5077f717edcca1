"""What `GET /api/options` answers: presets, the values each config field may take on this
server, the server's limits, whether writes need a token, the `mnist-lab train` option
of each config field, what a run's name, tags and notes may hold, the statuses a run may have,
and the network's fixed sizes (inputs, classes) the page counts parameters with."""

from __future__ import annotations

from app import limits, schemas, security
from app.runs.state import ACTIVE_STATUSES, STATUSES
from app.settings import Settings
from app.sweeps.record import SWEEP_STATUSES
from app.sweeps.spec import METHODS, METRICS, PRUNERS
from engine.cli import config_flags
from engine.config import CHOICES, preset_config
from engine.digits import IMAGE_SIDE, N_CLASSES, N_INPUTS
from engine.footprint import BATCH_NORM_PARAMETERS_PER_UNIT
from engine.presets import PRESETS


def describe(settings: Settings) -> schemas.Options:
    return schemas.Options(
        presets=[schemas.Preset(name=preset.name, description=preset.description,
                                config=preset_config(preset.name).to_dict())
                 for preset in PRESETS.values()],
        choices={name: list(choices) for name, choices in CHOICES.items()},
        fields=limits.field_bounds(settings),
        limits=limits.describe(settings),
        auth_required=security.auth_required(settings),
        cli_flags=config_flags(),
        run_fields=list(schemas.RUN_FIELD_BOUNDS),
        run_field_bounds=schemas.RUN_FIELD_BOUNDS,
        statuses=list(STATUSES),
        active_statuses=list(ACTIVE_STATUSES),
        sweeps=schemas.SweepOptions(methods=list(METHODS), pruners=list(PRUNERS),
                                    metrics=dict(METRICS), statuses=list(SWEEP_STATUSES)),
        network=schemas.Network(inputs=N_INPUTS, image_side=IMAGE_SIDE, classes=N_CLASSES,
                                batch_norm_parameters_per_unit=BATCH_NORM_PARAMETERS_PER_UNIT),
    )
