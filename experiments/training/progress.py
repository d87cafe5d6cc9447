"""A group's progress while it trains: a bar on a terminal, plain lines in a log file.

On a terminal (stderr a tty) a tqdm bar per group, redrawn each epoch. In a log file (a
batch job) a bar would be a stream of carriage returns, so a plain line instead, after
an epoch when :data:`EVERY` seconds have passed since the last one (and after the last
epoch): ``logreg group of 120: epoch 12/150, 120 runs, best val_acc 0.9271, 1.8 s/epoch,
ETA 4m08s``. ``quiet``: neither.
"""
import math
import sys
import time

import numpy as np

__all__ = ["Progress", "EVERY", "duration", "summary_line"]

#: Seconds between two plain progress lines at most once per epoch.
EVERY = 30.0


def duration(seconds):
    """``4m08s``, ``1h02m``, ``7s`` for people."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 \
        else f"{rest}s"


class Progress:
    """The progress of training ``desc`` (``alone``: a run, else a group) from epoch
    ``first`` to ``epochs``; ``position``: the bar's line (tqdm)."""

    def __init__(self, desc, epochs, first, alone, quiet=False, position=None, stream=None):
        self.desc, self.epochs, self.first, self.alone = desc, epochs, first, alone
        self.stream = stream or sys.stderr
        self.bar, self.plain = None, False
        if not quiet:
            if self.stream.isatty():
                from tqdm.auto import tqdm
                self.bar = tqdm(total=epochs, initial=first, position=position,
                                leave=position is None, desc=desc, unit="epoch",
                                dynamic_ncols=True, file=self.stream)
            else:
                self.plain = True
        self.started = self.said = time.perf_counter()
        self.best = -math.inf

    def epoch(self, epoch, losses, val_accs, n_alive):
        """After epoch ``epoch`` (0-based) of the runs that trained it: their training
        losses and validation accuracies (NaN for a run that diverged)."""
        done = [(l, a) for l, a in zip(losses, val_accs) if math.isfinite(l)]
        if done:
            self.best = max(self.best, max(a for _, a in done))
        if self.bar is not None:
            self._postfix(done, n_alive)
            self.bar.update(1)
        elif self.plain:
            now, last = time.perf_counter(), epoch + 1 == self.epochs
            if now - self.said >= EVERY or last:
                self.said = now
                self._line(epoch + 1, n_alive, now)

    def _postfix(self, done, n_alive):
        """A run's loss and validation accuracy; a group's mean loss and best accuracy."""
        if self.alone and done:
            self.bar.set_postfix(loss=f"{done[0][0]:.4f}", val_acc=f"{done[0][1]:.4f}",
                                 refresh=False)
        elif done:
            self.bar.set_postfix(loss=f"{np.mean([d[0] for d in done]):.4f}",
                                 best_val_acc=f"{self.best:.4f}", runs=n_alive, refresh=False)

    def _line(self, epochs_done, n_alive, now):
        per_epoch = (now - self.started) / max(epochs_done - self.first, 1)
        eta = per_epoch * (self.epochs - epochs_done)
        runs = "" if self.alone else f", {n_alive} run{'s' if n_alive != 1 else ''}"
        best = f", best val_acc {self.best:.4f}" if math.isfinite(self.best) else ""
        print(f"{self.desc}: epoch {epochs_done}/{self.epochs}{runs}{best}, "
              f"{per_epoch:.1f} s/epoch, ETA {duration(eta)}", file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def summary_line(name, summary, done_elsewhere=0):
    """The last line of a run of an experiment (a grid, the synthetic problem), in every
    mode: ``logreg: 120 trained, 0 failed; 120/120 done``."""
    done = summary["done_before"] + len(summary["trained"]) + done_elsewhere
    busy = f"; {len(summary['busy'])} in progress elsewhere" if summary.get("busy") else ""
    return (f"{name}: {len(summary['trained'])} trained, {len(summary['failed'])} failed; "
            f"{done}/{summary['total']} done{busy}")
