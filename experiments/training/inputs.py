"""What the runs of a group need to train, fixed by their config: one object.

:class:`TrainingInputs` holds the model spec (built for the run's dataset), the dataset
as the run's setup prepares it (:meth:`experiments.data.DataRequest.prepare`: the mean
subtracted or not, cut to the subsets), the epochs and schedule, the batch sizes, the
augmentation and the setup keys; it gives each epoch's learning rate and batch plan.
The runs of a group share it (:func:`experiments.training.grouping.check_group`: they
differ only in their rule's values and seed).
"""
import dataclasses

from experiments import models
from experiments.config.run_keys import RunConfig
from experiments.config.schedules import learning_rate
from experiments.config.setup_keys import SetupKeys
from experiments.data import DataRequest, epoch_batches

__all__ = ["TrainingInputs"]


@dataclasses.dataclass(frozen=True)
class TrainingInputs:
    """See the module docstring. Build it with :meth:`of`."""
    spec: models.ModelSpec
    dataset: object  # experiments.data.Dataset, prepared
    epochs: int
    schedule: object  # the config's lr_schedule, normalised
    batch_size: int
    val_batch_size: int
    flip: bool
    setup: SetupKeys

    @classmethod
    def of(cls, run, dataset=None, data_dir=None, quiet=False):
        """The inputs of ``run`` (a run dict or :class:`RunConfig`): the dataset loaded
        from ``data_dir`` if not given (a grid loads it once), prepared as the run's
        setup says."""
        config = run if isinstance(run, RunConfig) else RunConfig.from_run(run)
        spec = models.get_model(config.model, config.dataset)
        setup = config.setup_keys()
        request = DataRequest.of(config.as_run())
        dataset = request.load(data_dir, quiet=quiet) if dataset is None \
            else request.prepare(dataset)
        flip = dataset.flip if config.augmentation is None else config.augmentation == "flip"
        return cls(spec, dataset, config.epochs, config.lr_schedule, config.batch_size,
                   config.val_batch_size, flip, setup)

    def learning_rate(self, lr0, epoch):
        """The rate during ``epoch`` (0-based) of a run that starts at ``lr0``."""
        return learning_rate(lr0, epoch, self.epochs, self.schedule)

    def batches(self, seed, epoch):
        """``(indices, flips)`` of ``epoch`` for ``seed`` (:func:`epoch_batches`)."""
        return epoch_batches(seed, epoch, len(self.dataset.y_train), self.batch_size,
                             self.flip)
