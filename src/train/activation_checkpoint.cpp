// Activation checkpointing as a custom autograd function around each decoder layer.
#include "train/activation_checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>
#include <torch/custom_class.h>

namespace remora {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The terms a layer's routers add to the routing state (log Q of ReMix's samples, balance losses).
struct RoutingTerms {
  at::Tensor log_prob, aux_loss;
  std::map<int64_t, PooledBalance> pooled;
};

// Takes the state's accumulated terms out of it, leaving it empty.
RoutingTerms take_terms(RoutingState& state) {
  RoutingTerms terms{state.log_prob, state.aux_loss, state.pooled_balance};
  state.reset();
  return terms;
}

void put_terms(RoutingState& state, const RoutingTerms& terms) {
  state.log_prob = terms.log_prob;
  state.aux_loss = terms.aux_loss;
  state.pooled_balance = terms.pooled;
}

// The differentiable tensors among a layer's terms, in a fixed order.
std::vector<at::Tensor> differentiable(const RoutingTerms& terms) {
  std::vector<at::Tensor> out;
  if (terms.log_prob.defined()) out.push_back(terms.log_prob);
  if (terms.aux_loss.defined()) out.push_back(terms.aux_loss);
  for (const auto& [n, balance] : terms.pooled) out.push_back(balance.probs);
  return out;
}

// The routing state's settings a layer reads, as they were when it first ran.
struct RoutingSettings {
  bool training = false;
  at::Tensor token_mask, sequence_embedding;
  std::optional<RoutingState::NoiseWindow> noise_window;
  RoutingCapture* capture = nullptr;
  RoutingState::Tape* tape = nullptr;

  static RoutingSettings of(const RoutingState& s) {
    return {s.training, s.token_mask, s.sequence_embedding, s.noise_window, s.capture, s.tape};
  }
  void apply_to(RoutingState& s) const {
    s.training = training;
    s.token_mask = token_mask;
    s.sequence_embedding = sequence_embedding;
    s.noise_window = noise_window;
    s.capture = capture;
    s.tape = tape;
  }
};

// What recomputing one layer needs; owned by the autograd graph until its backward has run.
struct LayerRun : torch::CustomClassHolder {
  std::shared_ptr<DecoderLayer> layer;
  ForwardContext context;
  RoutingState* routing = nullptr;
  RoutingSettings settings;
  RoutingTerms terms;  // what the first run added (its no-grad parts are used as they are)
  RoutingState::Tape tape;
  at::Tensor default_rng, routing_rng;  // generator states at the layer's start
};

at::Generator default_generator() { return at::detail::getDefaultCPUGenerator(); }

// Runs the layer with the routing state holding only this layer's terms; returns them separately.
at::Tensor run_alone(LayerRun& run, const at::Tensor& x, RoutingTerms& terms) {
  RoutingTerms outer;
  if (run.routing) outer = take_terms(*run.routing);
  at::Tensor out = run.layer->forward(x, run.context);
  if (run.routing) {
    terms = take_terms(*run.routing);
    put_terms(*run.routing, outer);
  }
  return out;
}

struct CheckpointedLayer : torch::autograd::Function<CheckpointedLayer> {
  // Outputs: the layer's output, then the differentiable routing terms of its first run. `anchor`
  // requires a gradient, so that the first layer (whose input, the embedding, does not) gets a
  // backward too: its adapters' weights are reached only through the recompute.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& anchor,
                               c10::intrusive_ptr<LayerRun> run) {
    run->default_rng = default_generator().get_state();
    if (run->routing && run->routing->generator) run->routing_rng = run->routing->generator->get_state();
    if (run->routing) {
      run->settings = RoutingSettings::of(*run->routing);
      run->routing->tape = &run->tape;
    }
    at::Tensor out = run_alone(*run, x, run->terms);
    if (run->routing) run->routing->tape = run->settings.tape;
    ctx->save_for_backward({x});
    ctx->saved_data["run"] = c10::IValue::make_capsule(c10::static_intrusive_pointer_cast<torch::CustomClassHolder>(run));
    variable_list outputs{out};
    for (const auto& t : differentiable(run->terms)) outputs.push_back(t);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto run = c10::static_intrusive_pointer_cast<LayerRun>(ctx->saved_data["run"].toCapsule());
    const at::Tensor input = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    // Put the generators and the routing settings back to the layer's start, recompute it with
    // gradients, then restore whatever the rest of the backward expects.
    at::Generator generator = default_generator();
    const at::Tensor default_now = generator.get_state();
    generator.set_state(run->default_rng);
    at::Tensor routing_now;
    RoutingSettings settings_now;
    if (run->routing) {
      if (run->routing->generator) {
        routing_now = run->routing->generator->get_state();
        run->routing->generator->set_state(run->routing_rng);
      }
      settings_now = RoutingSettings::of(*run->routing);
      run->settings.apply_to(*run->routing);
      run->routing->capture = nullptr;  // recorded the first time
      run->tape.next = 0;
      run->tape.replaying = true;
      run->routing->tape = &run->tape;
    }
    RoutingTerms terms;
    at::Tensor out;
    {
      at::AutoGradMode enable_grad(true);
      out = run_alone(*run, input, terms);
    }
    generator.set_state(default_now);
    if (run->routing) {
      if (run->routing->generator) run->routing->generator->set_state(routing_now);
      settings_now.apply_to(*run->routing);
    }
    // Backward through the recomputed layer from every output that received a gradient.
    variable_list outputs{out}, recomputed = differentiable(terms), output_grads{grads[0]};
    for (size_t i = 0; i < recomputed.size(); ++i) {
      if (grads[i + 1].defined() && recomputed[i].requires_grad()) {
        outputs.push_back(recomputed[i]);
        output_grads.push_back(grads[i + 1]);
      }
    }
    torch::autograd::backward(outputs, output_grads);
    return {ctx->needs_input_grad(0) ? input.grad() : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

void enable_activation_checkpointing(CausalLM& model, RoutingState* routing) {
  model.run_layer = [routing](const std::shared_ptr<DecoderLayer>& layer, const at::Tensor& x, ForwardContext& context) {
    auto run = c10::make_intrusive<LayerRun>();
    run->layer = layer;
    run->context = context;
    run->routing = routing;
    static const at::Tensor anchor = at::empty({}).requires_grad_(true);
    variable_list outputs = CheckpointedLayer::apply(x, anchor, run);
    if (routing) {
      // The terms join the state through the checkpoint's outputs, so that their gradients reach it.
      size_t next = 1;
      const RoutingTerms& first = run->terms;
      if (first.log_prob.defined()) routing->add_log_prob(outputs[next++]);
      if (first.aux_loss.defined()) routing->add_aux_loss(outputs[next++]);
      for (const auto& [n, balance] : first.pooled) {
        routing->add_pooled_balance(balance.coef, balance.chosen, outputs[next++], balance.tokens);
      }
    }
    return outputs[0];
  };
}

}  // namespace remora
