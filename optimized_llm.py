"""The documented import path: ``from optimized_llm import OptimizedLLM``."""

from core import OptimizedLLM

__all__ = ["OptimizedLLM"]
