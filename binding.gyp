{
  # CPU-only build for node-gyp and prebuildify. CMakeLists.txt builds the same sources (plus CUDA);
  # test/build-sources.test.ts keeps the two source lists equal.
  "targets": [
    {
      "target_name": "nemotron_node",
      "sources": [
        "csrc/addon/addon.cc",
        "csrc/addon/convert.cc",
        "csrc/addon/debug_kernels.cc",
        "csrc/addon/js_engine.cc",
        "csrc/cache/kv_pool.cc",
        "csrc/cache/prefix_cache.cc",
        "csrc/cache/sequence_state.cc",
        "csrc/cache/snapshot_image.cc",
        "csrc/core/cpu_features.cc",
        "csrc/core/dtype.cc",
        "csrc/core/json.cc",
        "csrc/core/memory_bandwidth.cc",
        "csrc/core/thread_pool.cc",
        "csrc/engine/backend_cpu.cc",
        "csrc/engine/engine.cc",
        "csrc/engine/forward.cc",
        "csrc/engine/grammar.cc",
        "csrc/engine/sampler.cc",
        "csrc/engine/scheduler.cc",
        "csrc/engine/step_plan.cc",
        "csrc/kernels/attention_gqa.cc",
        "csrc/kernels/conv1d.cc",
        "csrc/kernels/elementwise.cc",
        "csrc/kernels/matmul.cc",
        "csrc/kernels/matmul_neon.cc",
        "csrc/kernels/matmul_quant.cc",
        "csrc/kernels/matmul_quant_fast.cc",
        "csrc/kernels/matmul_quant_neon.cc",
        "csrc/kernels/moe.cc",
        "csrc/kernels/rmsnorm.cc",
        "csrc/kernels/ssd_scan.cc",
        "csrc/kernels/ssm_state_update.cc",
        "csrc/model/config.cc",
        "csrc/model/gguf.cc",
        "csrc/model/mapped_file.cc",
        "csrc/model/safetensors.cc",
        "csrc/model/tensor_check.cc",
        "csrc/model/weights.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "csrc",
        "third_party/xgrammar/include",
        "third_party/xgrammar/3rdparty/dlpack/include"
      ],
      "dependencies": ["xgrammar"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fvisibility=hidden", "-Wall", "-Wno-unused-function", "-Wno-psabi"],
      "ldflags": ["-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
      }
    },
    {
      # XGrammar v0.2.5 (third_party/xgrammar/README.md): grammar-constrained decoding, as a static
      # library with its own flags (its code throws; warnings of vendored code are not ours to fix).
      "target_name": "xgrammar",
      "type": "static_library",
      "sources": [
        "third_party/xgrammar/cpp/compiled_grammar.cc",
        "third_party/xgrammar/cpp/config.cc",
        "third_party/xgrammar/cpp/earley_parser.cc",
        "third_party/xgrammar/cpp/fsm.cc",
        "third_party/xgrammar/cpp/fsm_builder.cc",
        "third_party/xgrammar/cpp/grammar.cc",
        "third_party/xgrammar/cpp/grammar_builder.cc",
        "third_party/xgrammar/cpp/grammar_compiler.cc",
        "third_party/xgrammar/cpp/grammar_functor.cc",
        "third_party/xgrammar/cpp/grammar_matcher.cc",
        "third_party/xgrammar/cpp/grammar_parser.cc",
        "third_party/xgrammar/cpp/grammar_printer.cc",
        "third_party/xgrammar/cpp/json_schema_converter.cc",
        "third_party/xgrammar/cpp/json_schema_converter_ext.cc",
        "third_party/xgrammar/cpp/lark_converter.cc",
        "third_party/xgrammar/cpp/regex_converter.cc",
        "third_party/xgrammar/cpp/structural_tag.cc",
        "third_party/xgrammar/cpp/support/logging.cc",
        "third_party/xgrammar/cpp/support/recursion_guard.cc",
        "third_party/xgrammar/cpp/testing.cc",
        "third_party/xgrammar/cpp/tokenizer_info.cc"
      ],
      "include_dirs": [
        "third_party/xgrammar/include",
        "third_party/xgrammar/3rdparty/picojson",
        "third_party/xgrammar/3rdparty/dlpack/include"
      ],
      "defines": ["XGRAMMAR_ENABLE_CPPTRACE=0", "XGRAMMAR_ENABLE_INTERNAL_CHECK=0"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O2", "-fexceptions", "-fPIC", "-fvisibility=hidden", "-w"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
      }
    }
  ]
}
