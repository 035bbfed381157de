// Fuzzes adapter_config.json (PEFT LORA and remora's REMORA) and matches it against every projection
// of a 4-layer Llama-style model, as attaching an adapter does.
#include "fuzz_files.h"
#include "adapters/adapter_config.h"
#include "core/error.h"
#include "core/json_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = remora::fuzz::write_file("adapter_config.json", data, size);
  try {
    const remora::AdapterConfig config = remora::AdapterConfig::from_json(remora::read_json_file(path), path);
    for (int layer = 0; layer < 4; ++layer) {
      for (const char* projection : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}) {
        config.spec_for("model.layers." + std::to_string(layer) + "." + projection, layer);
      }
    }
  } catch (const remora::Error&) {
  }
  return 0;
}
