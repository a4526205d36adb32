// A dynhost op in C: the whole pattern in one component. Without inputs it
// reads words from the file `config.file` and emits one item per word;
// mapped over those items, it returns each word in capitals (failing for
// `config.fail_on`); collecting them, it joins them with spaces.
// Fail a step by setting `err` and returning false: it fails as `op-error`.
// (Values are JSON strings; this template reads only the simple strings it
// writes. Use a JSON library for real data.)
#include "dynamic_op.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

// The string value of `"name": "..."` in the config JSON, or NULL.
static char *config_string(const dynamic_op_string_t *config, const char *name) {
  char *text = strndup((const char *)config->ptr, config->len);
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\"", name);
  char *at = strstr(text, pattern);
  char *value = NULL;
  if (at && (at = strchr(at + strlen(pattern), '"'))) {
    char *end = strchr(at + 1, '"');
    if (end) value = strndup(at + 1, end - at - 1);
  }
  free(text);
  return value;
}

// The mapping key for any text: valid (1-128 of `A-Za-z0-9_.-`), unique and
// stable. Valid text is its own key; anything else is cleaned (other bytes
// become `_`) and given a short hash of the original, so two texts that
// clean alike still get different keys.
static char *key_for(const char *name) {
  size_t len = strlen(name);
  bool valid = len > 0 && len <= 128 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
  for (size_t i = 0; valid && i < len; i++) {
    valid = isalnum((unsigned char)name[i]) || strchr("_.-", name[i]) != NULL;
  }
  if (valid) return strdup(name);
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < len; i++) {
    hash = (hash ^ (unsigned char)name[i]) * 0x100000001b3ULL;
  }
  char suffix[16];
  snprintf(suffix, sizeof suffix, "-%012llx", (unsigned long long)(hash & 0xffffffffffffULL));
  // One `_` per UTF-8 character that is not valid, as the other templates do.
  char *key = malloc(len + sizeof suffix);
  size_t out = 0;
  for (size_t i = 0; i < len && out < 128 - strlen(suffix); i++) {
    unsigned char c = (unsigned char)name[i];
    if ((c & 0xc0) == 0x80) continue;  // a continuation byte
    key[out++] = (c < 0x80 && (isalnum(c) || strchr("_.-", c))) ? (char)c : '_';
  }
  strcpy(key + out, suffix);
  return key;
}

// The word in a JSON string value (simple strings only).
static char *json_word(const dynamic_op_list_u8_t *value) {
  if (value->len < 2) return strndup((const char *)value->ptr, value->len);
  return strndup((const char *)value->ptr + 1, value->len - 2);
}

static bool split(const dynamic_op_string_t *config, dynamic_op_list_u8_t *ret, dynamic_op_string_t *err) {
  char *path = config_string(config, "file");
  if (!path) return fail(err, "config needs `file`");
  FILE *file = fopen(path, "r");
  if (!file) {
    char message[512];
    snprintf(message, sizeof message, "cannot read `%s`", path);
    free(path);
    return fail(err, message);
  }
  free(path);
  char word[1024];
  int count = 0;
  while (fscanf(file, "%1023s", word) == 1) {
    char *key_text = key_for(word);
    dynamic_op_string_t key;
    dynamic_op_string_dup(&key, key_text);
    free(key_text);
    char json[1030];
    int len = snprintf(json, sizeof json, "\"%s\"", word);
    dynamic_op_list_u8_t value;
    set_bytes(&value, json, (size_t)len);
    dynamic_op_string_t emit_err;
    if (!dynhost_op_host_emit_dynamic(&key, &value, &emit_err)) {
      fclose(file);
      *err = emit_err;
      return false;
    }
    count++;
  }
  fclose(file);
  char out[16];
  int len = snprintf(out, sizeof out, "%d", count);
  set_bytes(ret, out, (size_t)len);
  return true;
}

static bool shout(const dynamic_op_string_t *config, const dynamic_op_list_u8_t *value,
                  dynamic_op_list_u8_t *ret, dynamic_op_string_t *err) {
  char *word = json_word(value);
  char *fail_on = config_string(config, "fail_on");
  if (fail_on && strcmp(word, fail_on) == 0) {
    char message[1100];
    snprintf(message, sizeof message, "cannot shout \"%s\"", word);
    free(word);
    free(fail_on);
    return fail(err, message);
  }
  free(fail_on);
  free(word);
  set_bytes(ret, (const char *)value->ptr, value->len);
  for (size_t i = 0; i < ret->len; i++) {
    ret->ptr[i] = (uint8_t)toupper(ret->ptr[i]);
  }
  return true;
}

static bool join(const dynhost_op_types_collection_t *collection, dynamic_op_list_u8_t *ret) {
  size_t total = 2;
  for (size_t i = 0; i < collection->items.len; i++) total += collection->items.ptr[i].value.len + 1;
  char *out = malloc(total);
  size_t len = 0;
  out[len++] = '"';
  for (size_t i = 0; i < collection->items.len; i++) {
    char *word = json_word(&collection->items.ptr[i].value);
    if (i > 0) out[len++] = ' ';
    memcpy(out + len, word, strlen(word));
    len += strlen(word);
    free(word);
  }
  out[len++] = '"';
  set_bytes(ret, out, len);
  free(out);
  return true;
}

// `ret->is_some = false` would return "no value" (allowed when job.toml
// says `returns = { required = false }`: the ops reading it are skipped).
bool exports_dynhost_op_op_run(exports_dynhost_op_op_context_t *ctx,
                               exports_dynhost_op_op_list_input_t *inputs,
                               dynamic_op_option_list_u8_t *ret,
                               dynamic_op_string_t *err) {
  ret->is_some = true;
  if (inputs->len == 0) {
    return split(&ctx->config, &ret->val, err);
  }
  dynhost_op_types_input_value_t *value = &inputs->ptr[0].value;
  if (value->tag == DYNHOST_OP_TYPES_INPUT_VALUE_SINGLE) {
    return shout(&ctx->config, &value->val.single, &ret->val, err);
  }
  return join(&value->val.collected, &ret->val);
}
