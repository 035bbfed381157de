// Activation checkpointing: decoder layers keep only their input during the forward and run again
// in the backward, replaying what they drew and learned the first time.
#pragma once

#include "adapters/routing.h"
#include "model/decoder.h"

namespace remora {

// From now on, every layer of `model` that runs while gradients are recorded keeps only its input;
// the backward recomputes the layer with the same dropout masks and ReMix routes (the generators are
// put back to their states at the layer's start), the routers' remembered values (SMoRA's bias, not
// updated a second time) and the same routing-state settings, so that every gradient equals the
// one without checkpointing. `routing` is the adapters' routing state (nullptr without adapters).
void enable_activation_checkpointing(CausalLM& model, RoutingState* routing);

}  // namespace remora
