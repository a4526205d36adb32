// A dynhost op in C. Without inputs it emits one item per word in
// `config.words`; mapped over those items, it returns each word in capitals.
// Fail a step by setting `err` and returning false.
#include "dynamic_op.h"

#include <ctype.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static bool fail(dynamic_op_string_t *err, const char *message) {
  dynamic_op_string_dup(err, message);
  return false;
}

static void set_bytes(dynamic_op_list_u8_t *out, const char *data, size_t len) {
  out->ptr = malloc(len ? len : 1);
  memcpy(out->ptr, data, len);
  out->len = len;
}

// Emits each string of the `"words": [...]` array in the config JSON (simple
// strings only) and returns how many there were.
static bool emit_words(const dynamic_op_string_t *config, dynamic_op_list_u8_t *ret, dynamic_op_string_t *err) {
  char *text = strndup((const char *)config->ptr, config->len);
  char *p = strstr(text, "\"words\"");
  int count = 0;
  if (p && (p = strchr(p, '['))) {
    for (p++; *p && *p != ']'; p++) {
      if (*p != '"') continue;
      char *end = strchr(p + 1, '"');
      if (!end) break;
      dynamic_op_string_t key;
      dynamic_op_string_dup_n(&key, p + 1, end - p - 1);
      dynamic_op_list_u8_t value;
      set_bytes(&value, p, end - p + 1);  // the word as a JSON string
      dynamic_op_string_t emit_err;
      if (!dynhost_op_host_emit_dynamic(&key, &value, &emit_err)) {
        free(text);
        *err = emit_err;
        return false;
      }
      count++;
      p = end;
    }
  }
  free(text);
  char out[16];
  int len = snprintf(out, sizeof out, "%d", count);
  set_bytes(ret, out, len);
  return true;
}

bool exports_dynhost_op_op_run(exports_dynhost_op_op_context_t *ctx,
                               exports_dynhost_op_op_list_input_t *inputs,
                               dynamic_op_list_u8_t *ret,
                               dynamic_op_string_t *err) {
  if (inputs->len == 0) {
    return emit_words(&ctx->config, ret, err);
  }
  if (inputs->ptr[0].value.tag != DYNHOST_OP_TYPES_INPUT_VALUE_SINGLE) {
    return fail(err, "expected a single input");
  }
  dynamic_op_list_u8_t *word = &inputs->ptr[0].value.val.single;
  set_bytes(ret, (const char *)word->ptr, word->len);
  for (size_t i = 0; i < ret->len; i++) {
    ret->ptr[i] = (uint8_t)toupper(ret->ptr[i]);
  }
  return true;
}
