"""The run read back and reported: its history, model card, plots, console summary and TF-IDF baseline."""
