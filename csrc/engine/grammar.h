// Grammar-constrained decoding (issue #15): a thin layer over XGrammar (third_party/xgrammar, v0.2.5)
// so that nothing else in the engine includes its headers.
//
// GrammarVocab: the model's vocabulary as XGrammar needs it (each id's decoded bytes; special tokens
// are empty strings, which XGrammar never allows) plus a grammar compiler with its cache. One per
// engine, built once (JsEngine::setGrammarVocab) from the byte strings the tokenizer gives.
// CompiledGrammar: a grammar compiled against that vocabulary (immutable, shared by requests).
// GrammarState: one request's constraint. It waits for its trigger strings (e.g. "</think>", then
// "<TOOLCALL>") in the bytes of the generated tokens, then runs an XGrammar matcher: mask() fills
// the allowed-token bitmask for the next draw, accept() advances after a token.
//
// Built with NEMOTRON_NO_GRAMMAR (scripts/sanitize.sh), every entry point reports kInvalidArgument and
// grammar_available() is false.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace nemo {

bool grammar_available();

class GrammarVocab;
class CompiledGrammar;

// One piece of a grammar; a compiled grammar is the concatenation of its pieces.
struct GrammarPart {
  enum class Kind { kEbnf, kJsonSchema, kJsonObject, kRegex, kLiteral };
  Kind kind = Kind::kEbnf;
  std::string source;   // EBNF (root rule "root"), a JSON schema, a regex or a literal string
  bool strict = true;   // JSON schema: additional properties/items not allowed unless the schema says so
};

// tokens[i] = the bytes of token i ("" for special tokens); stop = the end tokens (accepted only once
// the grammar is complete). vocab_size >= tokens.size() (the rest are padding ids, never allowed).
Status make_grammar_vocab(const std::vector<std::string>& tokens, const std::vector<int32_t>& stop,
                          int64_t vocab_size, std::shared_ptr<GrammarVocab>* out);
// Compiles on the calling thread (a worker); errors (invalid schema or grammar) as kInvalidArgument.
Status compile_grammar(GrammarVocab& vocab, const std::vector<GrammarPart>& parts,
                       std::shared_ptr<const CompiledGrammar>* out);
// The vocabulary size the masks of this vocabulary cover.
int64_t grammar_vocab_size(const GrammarVocab& vocab);

// What a request asks for: the grammar, the strings after which it applies (in order; none = from
// the first token) and the request's end tokens.
struct GrammarSpec {
  std::shared_ptr<GrammarVocab> vocab;
  std::shared_ptr<const CompiledGrammar> grammar;
  std::vector<std::string> triggers;
};

class GrammarState {
 public:
  GrammarState(const GrammarSpec& spec, const std::vector<int32_t>& eos);
  ~GrammarState();
  GrammarState(const GrammarState&) = delete;
  GrammarState& operator=(const GrammarState&) = delete;

  // Whether the next draw is constrained (the triggers have all been seen and the grammar holds).
  bool active() const { return active_; }
  // Fills `mask` ((vocab + 31) / 32 words, bit i%32 of word i/32 = token i allowed). Only when active().
  void mask(uint32_t* mask);
  int64_t mask_words() const;
  // A token sampled or forced into the request. Before activation its bytes are matched against the
  // triggers; after, the matcher advances (a token it rejects — forced formatting such as the "\n\n"
  // after a thinking budget's "</think>" — is skipped).
  void accept(int32_t token);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool active_ = false;
};

}  // namespace nemo
