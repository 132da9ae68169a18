"""`pretrain`: masked-language (and sentence-order) pretraining of ALBERT on the user's own texts."""
