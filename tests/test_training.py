"""The assembly every training command shares: the streamed checkpoint writer as a Trainer plugin (a user's own
kept), and the loggers of one run folder (a resumed run's own)."""

from conftest import fit_args, write_good_splits
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lightning_albert.checkpoints import StreamingCheckpointIO
from lightning_albert.fit import AlbertCLI
from lightning_albert.training import default_loggers


def test_checkpoints_are_streamed_unless_the_user_gave_a_writer(tmp_path):
    write_good_splits(tmp_path)
    ours = AlbertCLI(args=fit_args(tmp_path)[1:], run=False)  # run=False: no subcommand word
    assert type(ours.trainer.strategy.checkpoint_io) is StreamingCheckpointIO
    plugin = "lightning.pytorch.plugins.io.TorchCheckpointIO"
    theirs = AlbertCLI(args=[*fit_args(tmp_path)[1:], "--trainer.plugins", plugin], run=False)
    assert type(theirs.trainer.strategy.checkpoint_io) is TorchCheckpointIO


def test_both_loggers_write_into_one_run_folder_and_a_resumed_run_into_its_own(tmp_path):
    csv_logger, tensorboard = default_loggers(str(tmp_path))
    assert csv_logger.log_dir == tensorboard.log_dir == str(tmp_path / "lightning_logs" / "version_0")
    (tmp_path / "lightning_logs" / "version_3").mkdir(parents=True)
    (tmp_path / "lightning_logs" / "version_0").mkdir()
    assert default_loggers(str(tmp_path))[0].log_dir == str(tmp_path / "lightning_logs" / "version_4")
    resumed = default_loggers(str(tmp_path / "elsewhere"), tmp_path / "lightning_logs" / "version_0")
    assert [lg.log_dir for lg in resumed] == [str(tmp_path / "lightning_logs" / "version_0")] * 2
