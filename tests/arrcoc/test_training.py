import torch

from arrcoc.balancing import Balancer
from arrcoc.knowing import WorldModelScorer
from arrcoc.training import TokenHead, future_preservation_loss, weighted_turns

MESSAGES = [
    {"role": "user", "content": "please book two train tickets from Porto to Lisbon on May 3"},
    {"role": "assistant", "content": "Sure, first or second class?"},
    {"role": "user", "content": "second class, in the morning"},
]


def test_weighted_turns_matches_pooling_and_occlusion(tiny_world_model):
    pooled, _ = WorldModelScorer(tiny_world_model).pool(MESSAGES)
    n = len(pooled.word_turn)
    assert torch.allclose(weighted_turns(pooled, torch.ones(n)), pooled.pooled(), atol=1e-6)
    weights = torch.ones(n)
    weights[4] = 0.0
    turns = weighted_turns(pooled, weights)
    assert torch.allclose(turns[pooled.word_turn[4]], pooled.occluded(torch.tensor([4]))[0], atol=1e-6)


def test_gradients_reach_learned_scorer_and_balancer(tiny_world_model):
    scorer = WorldModelScorer(tiny_world_model)
    torch.manual_seed(0)
    head = TokenHead(tiny_world_model.encoder.dim)
    balancer = Balancer(learned=True)
    loss = future_preservation_loss(scorer, MESSAGES, head, balancer, budget=0.3, generator=torch.Generator())
    assert loss.item() > 0
    loss.backward()
    head_grad = sum(p.grad.abs().sum() for p in head.parameters() if p.grad is not None)
    balancer_grad = sum(p.grad.abs().sum() for p in balancer.mlp.parameters() if p.grad is not None)
    assert head_grad > 0 and balancer_grad > 0
    # the world model's own heads receive gradients too (it could be fine-tuned jointly)
    assert tiny_world_model.value_head[-1].weight.grad.abs().sum() > 0
    tiny_world_model.zero_grad(set_to_none=True)
