"""Network architectures of the bundled models, shared by `model_store/` recipes and `bench/`.

Pure PyTorch, no I/O. An archive's ``model.py`` subclasses one of these (the TorchServe worker
has the ``service`` package installed), so the served class, the trained class and the
benchmarked class are the same code.
"""

from .cnn import SmallCNN
from .mlp import MLP
from .resnet import BasicBlock, ResNet18
from .tinylm import CausalLMOutput, TinyCausalLM
from .word_tokenizer import WordTokenizer

__all__ = ["MLP", "SmallCNN", "BasicBlock", "ResNet18", "CausalLMOutput", "TinyCausalLM",
           "WordTokenizer"]
