"""TensorBoard's view of a run: the events that give it its hyperparameters in the
HPARAMS dashboard (tensorboardX's hparams summaries) and end its session. The live
metric log (:mod:`experiments.training.metric_logs`) and the export of a finished grid's
curves (:mod:`experiments.analysis.event_files`) write them alike. tensorboardX (the
``.[tensorboard]`` extra) is imported when an event is made.
"""
import os
import time

import yaml

from experiments.results.store import GRID_FILE

#: The HPARAMS dashboard's metrics: each run's last value of these scalars (the final epoch's).
HPARAM_METRICS = ("val_acc", "val_loss")

__all__ = ["HPARAM_METRICS", "grid_axes_of", "hparam_names", "run_hparams", "hparams_events",
           "session_end_event"]


def grid_axes_of(grid_dir):
    """The axes ``grid.yaml`` in ``grid_dir`` names: those of ``grid:`` and each rule's
    own (a list under ``rules:``); None when there is no readable ``grid.yaml``."""
    try:
        with open(os.path.join(grid_dir, GRID_FILE), encoding="utf-8") as f:
            settings = (yaml.safe_load(f) or {}).get("settings") or {}
        axes = list(settings.get("axes") or ())
        for own in (settings.get("rules") or {}).values():
            axes += [k for k, v in (own or {}).items() if isinstance(v, list)]
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        return None
    return [a for a in dict.fromkeys(axes) if isinstance(a, str)]


def hparam_names(axes):
    """The HPARAMS dashboard's hyperparameters of a grid: the updater, its ``axes``, the seed."""
    return list(dict.fromkeys(["updater", *axes, "seed"]))


def run_hparams(run, axes):
    """A run's hyperparameters for the HPARAMS dashboard: ``{key: value}`` on
    :func:`hparam_names` of ``axes``, where the run has a value (a mixed grid's rule lacks
    some)."""
    return {k: run[k] for k in hparam_names(axes) if run.get(k) is not None}


def _plugin_summary(tag, data):
    """A Summary carrying hparams plugin ``data`` (an HParamsPluginData) under ``tag``."""
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name="hparams", content=data.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def _experiment(values, names, domains):
    """The experiment summary: each of ``names`` typed (with its discrete domain where
    ``domains`` gives one) and :data:`HPARAM_METRICS`. None if a name's type is unknown
    (the run lacks it and there is no domain): TensorBoard then works the experiment out
    from the runs, rather than take one run's partial list for the whole grid."""
    from tensorboardX.proto.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, \
        MetricName
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    infos = []
    for name in names:
        seen = (domains or {}).get(name) or [values.get(name)]
        kind = ("DATA_TYPE_STRING" if isinstance(seen[0], str) else "DATA_TYPE_BOOL"
                if isinstance(seen[0], bool) else "DATA_TYPE_FLOAT64"
                if isinstance(seen[0], (int, float)) else None)
        if kind is None:
            return None
        info = HParamInfo(name=name, type=DataType.Value(kind))
        if domains:
            info.domain_discrete.extend(seen)
        infos.append(info)
    experiment = Experiment(hparam_infos=infos,
                            metric_infos=[MetricInfo(name=MetricName(tag=m))
                                          for m in HPARAM_METRICS])
    return _plugin_summary("_hparams_/experiment", HParamsPluginData(experiment=experiment))


def hparams_events(values, names=None, domains=None, wall_time=None):
    """Events that give a run its hyperparameters ``values`` in TensorBoard's HPARAMS
    dashboard (tensorboardX's hparams summaries): the session start, and the
    experiment: the grid's hyperparameters ``names`` (default: those of ``values``),
    with ``domains`` (``{name: [values]}`` of the whole grid) to choose from where known,
    and :data:`HPARAM_METRICS`."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.summary import hparams
    _, start, _ = hparams(values, {m: 0.0 for m in HPARAM_METRICS})
    wall_time = time.time() if wall_time is None else wall_time
    events = [Event(step=0, wall_time=wall_time, summary=start)]
    experiment = _experiment(values, list(values) if names is None else names, domains)
    if experiment is not None:
        events.append(Event(step=0, wall_time=wall_time, summary=experiment))
    return events


def session_end_event(status="STATUS_SUCCESS", wall_time=None):
    """The event that ends a run's HPARAMS session (``STATUS_SUCCESS``, ``STATUS_FAILURE``)."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    data = HParamsPluginData(session_end_info=SessionEndInfo(status=Status.Value(status)))
    return Event(step=0, wall_time=time.time() if wall_time is None else wall_time,
                 summary=_plugin_summary("_hparams_/session_end_info", data))
