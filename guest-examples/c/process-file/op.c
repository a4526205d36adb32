// process_file in C: mapped once per file; reads the JSON string in its
// `path` input, stats that file and returns its size in bytes as JSON.
#include "dynamic_op.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bool fail(dynamic_op_string_t *err, const char *message) {
  dynamic_op_string_dup(err, message);
  return false;
}

bool exports_dynhost_op_op_run(exports_dynhost_op_op_context_t *ctx,
                               exports_dynhost_op_op_list_input_t *inputs,
                               dynamic_op_option_list_u8_t *ret,
                               dynamic_op_string_t *err) {
  (void)ctx;
  for (size_t i = 0; i < inputs->len; i++) {
    exports_dynhost_op_op_input_t *input = &inputs->ptr[i];
    if (input->name.len != 4 || memcmp(input->name.ptr, "path", 4) != 0) {
      continue;
    }
    if (input->value.tag != DYNHOST_OP_TYPES_INPUT_VALUE_SINGLE) {
      return fail(err, "expected a single input named `path`");
    }
    dynamic_op_list_u8_t *json = &input->value.val.single;
    // The path arrives as a JSON string: drop the quotes.
    if (json->len < 2 || json->ptr[0] != '"' || json->ptr[json->len - 1] != '"') {
      return fail(err, "`path` is not a JSON string");
    }
    char path[4096];
    size_t n = json->len - 2;
    if (n >= sizeof path) {
      return fail(err, "`path` is too long");
    }
    memcpy(path, json->ptr + 1, n);
    path[n] = '\0';
    struct stat st;
    if (stat(path, &st) != 0) {
      return fail(err, "cannot stat the file");
    }
    char out[32];
    int len = snprintf(out, sizeof out, "%lld", (long long)st.st_size);
    ret->is_some = true;
    ret->val.ptr = malloc(len);
    memcpy(ret->val.ptr, out, len);
    ret->val.len = len;
    return true;
  }
  return fail(err, "expected a single input named `path`");
}
