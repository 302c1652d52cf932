"""The running daemon. ``daemon`` is the thin service (loop, signals, sd_notify, shutdown);
``reconciler`` decides, purely, what each look at the folder calls for; ``dispatcher`` runs the
jobs and turns their outcomes into state changes and timers. Around them: the watcher and its
mode, the drop-folder guard, host greeting, worker pools, and the events it reports."""
