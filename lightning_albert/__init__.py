"""Fine-tune ALBERT for text classification with PyTorch Lightning."""

from lightning_albert.data import TextClassificationDataModule
from lightning_albert.model import AlbertClassifier

__all__ = ["AlbertClassifier", "TextClassificationDataModule"]
__version__ = "0.1.0"
