"""Each private Lightning member the package relies on, checked by itself: when a Lightning release renames or
drops one, this file names it, beside the behaviour tests that would fail less plainly (test_resume.py,
test_distributed.py, test_fit.py, test_tables.py)."""

import inspect

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loops.fit_loop import _FitLoop

from lightning_albert.fit import AlbertCLI


def test_the_signal_flag_that_ddp_ranks_set_after_agreeing_to_stop_exists():
    # faults.InterruptCheckpoint._agree_to_stop sets it; trainer.received_sigterm reads it.
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    connector = trainer._signal_connector
    assert connector.received_sigterm is False
    connector.received_sigterm = True
    assert trainer.received_sigterm is True


def test_the_fit_loop_members_that_restore_the_training_order_exist():
    # resume.RestoreTrainingOrder (Lightning-AI/pytorch-lightning#20550): hands the loader state over itself.
    assert callable(_FitLoop._load_combined_loader_states)
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert hasattr(trainer.fit_loop, "_combined_loader_states_to_load")
    assert hasattr(trainer.fit_loop, "_data_fetcher")


def test_model_checkpoints_own_save_takes_the_trainer_and_a_path():
    # checkpoints.LastCheckpoint writes last.ckpt through it, so loggers hear of the save.
    assert list(inspect.signature(ModelCheckpoint._save_checkpoint).parameters) == ["self", "trainer", "filepath"]


def test_the_per_subcommand_parser_hook_is_the_one_lightning_calls():
    # fit.AlbertCLI adds predict's --predictions_file there: it must still be what builds a subcommand's parser.
    assert "_prepare_subcommand_parser" in inspect.getsource(LightningCLI._add_subcommands)
    assert AlbertCLI._prepare_subcommand_parser is not LightningCLI._prepare_subcommand_parser
