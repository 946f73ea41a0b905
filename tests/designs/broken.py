"""Factories and blocks that break the contract, each in one way a user's code does."""
import torch
from torch import nn


class Float32Inside(nn.Module):
    def forward(self, x):  # multiplies by a float32 matrix created regardless of the input's dtype
        return x @ torch.eye(x.shape[-1])


class ReturnsTuple(nn.Module):
    def forward(self, x):
        return x, None


class Shrinks(nn.Module):
    def forward(self, x):
        return x[..., :-1]


class MakesNaN(nn.Module):
    def forward(self, x):
        return x * float("nan")


class RaisesInForward(nn.Module):
    def forward(self, x):
        raise RuntimeError("this block is broken")


def raises(d, seed):
    raise ValueError("d must be a power of two")


def type_error_inside(d, seed):
    return nn.Linear(d, d)(d)  # a TypeError raised inside the factory, not a signature problem


def positional_only(width):
    return nn.Identity()


def float32_inside(d, seed):
    return Float32Inside()


def returns_tuple(d, seed):
    return ReturnsTuple()


def shrinks(d, seed):
    return Shrinks()


def makes_nan(d, seed):
    return MakesNaN()


def raises_in_forward(d, seed):
    return RaisesInForward()


def not_a_module(d, seed):
    return 3


def same_every_seed(d, seed):
    torch.manual_seed(0)  # ignores its seed: every instance is the same network
    return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d))
