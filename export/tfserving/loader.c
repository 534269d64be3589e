/* TF Serving's load path without a TF Serving binary.
 *
 * TF Serving loads a model version with LoadSavedModel (tag "serve"): it restores
 * the variables, runs the SavedModel's init op (vocabulary tables and other
 * initialisers), then answers each request with one Session::Run on the tensors
 * named by a SignatureDef. The TensorFlow wheel ships that path as the C API
 * (TF_LoadSessionFromSavedModel, TF_SessionRun); this program drives it.
 *
 *   loader VERSION_DIR [--signature NAME] [--inputs FILE] [--warmup] [--out FILE]
 *          [--no-init] [VERSION_DIR [options]]... [--timing]
 *
 *   (no action)      load, print every signature (key, tensor, dtype, shape)
 *   --inputs FILE    run --signature (default serving_default) on FILE's tensors
 *   --warmup         replay every record of assets.extra/tf_serving_warmup_requests
 *                    (TFRecord of tensorflow.serving.PredictionLog, predict_log)
 *   --out FILE       write the outputs (one group per run) to FILE instead of
 *                    printing them
 *   --no-init        debug: answer from a second session on the loaded graph that
 *                    restored the variables but never ran the init op, which is
 *                    what a loader that forgets the init op would serve
 *   --timing         print load and run times on stderr
 *
 * Each VERSION_DIR starts a job and the options after it apply to it; the jobs run
 * one after the other in one process, each version loaded and unloaded in turn.
 *
 * The signatures are read from the MetaGraphDef the loader returns with a small
 * protobuf wire-format reader (no libprotobuf). TFRecord framing is checked: both
 * masked CRC-32C values of every record are verified.
 *
 * Tensor file format (written by export/tfserving/__init__.py, little-endian):
 *   "TFRECTN1"                                   8-byte magic, once
 *   then groups until end of file, each:
 *     u32 count, then count tensors, each:
 *       u32 name_len, name bytes
 *       u32 dtype   (TF_DataType: 1 float, 2 double, 3 int32, 4 uint8, 5 int16,
 *                    6 int8, 7 string, 9 int64, 10 bool)
 *       u32 ndim, i64 dims[ndim]
 *       data: numeric dtypes: prod(dims) * itemsize raw bytes (C order);
 *             string: per element u64 length, bytes
 *
 * Any failure prints one line "loader: error: ..." on stderr and exits 1.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

#define MAX_DIMS 16
static const char MAGIC[8] = {'T', 'F', 'R', 'E', 'C', 'T', 'N', '1'};
static const char WARMUP_FILE[] = "assets.extra/tf_serving_warmup_requests";

/* ---------------------------------------------------------------- errors */

static const char *error_context; /* the job's VERSION_DIR when there are several */

static void die(const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  int used = error_context ? snprintf(msg, sizeof msg, "%s: ", error_context) : 0;
  va_start(ap, fmt);
  vsnprintf(msg + used, sizeof msg - used, fmt, ap);
  va_end(ap);
  for (char *c = msg; *c; c++) /* one line, whatever TF's message holds */
    if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
  fprintf(stderr, "loader: error: %s\n", msg);
  exit(1);
}

static const char *code_name(TF_Code code) {
  static const char *names[] = {
      "OK",          "CANCELLED",          "UNKNOWN",        "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",    "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE",    "DATA_LOSS",
      "UNAUTHENTICATED"};
  return (unsigned)code < sizeof names / sizeof *names ? names[code] : "?";
}

static void check(TF_Status *status, const char *what) {
  if (TF_GetCode(status) != TF_OK)
    die("%s: %s: %s", what, code_name(TF_GetCode(status)), TF_Message(status));
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory (%zu bytes)", n);
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) die("out of memory (%zu bytes)", n);
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *d = xmalloc(n + 1);
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint8_t *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open %s", path);
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = xmalloc(cap);
  for (;;) {
    if (n == cap) buf = xrealloc(buf, cap *= 2);
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) die("cannot read %s", path);
  fclose(f);
  *size = n;
  return buf;
}

/* ------------------------------------------------------- dtypes, tensors */

static const char *dtype_name(int dtype) {
  switch (dtype) {
    case TF_FLOAT: return "float32";
    case TF_DOUBLE: return "float64";
    case TF_INT32: return "int32";
    case TF_UINT8: return "uint8";
    case TF_INT16: return "int16";
    case TF_INT8: return "int8";
    case TF_STRING: return "string";
    case TF_INT64: return "int64";
    case TF_BOOL: return "bool";
    default: return NULL;
  }
}

static const char *dtype_str(int dtype) {
  static char buf[32];
  const char *n = dtype_name(dtype);
  if (n) return n;
  snprintf(buf, sizeof buf, "dtype#%d", dtype);
  return buf;
}

static int64_t num_elements(const int64_t *dims, int ndim) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (dims[i] < 0) die("negative dimension %lld", (long long)dims[i]);
    n *= dims[i];
  }
  return n;
}

/* A TF_STRING tensor of n elements, each initialised empty. */
static TF_Tensor *new_string_tensor(const int64_t *dims, int ndim) {
  int64_t n = num_elements(dims, ndim);
  TF_Tensor *t = TF_AllocateTensor(TF_STRING, dims, ndim, n * sizeof(TF_TString));
  if (!t) die("cannot allocate a string tensor of %lld elements", (long long)n);
  TF_TString *s = TF_TensorData(t);
  for (int64_t i = 0; i < n; i++) TF_StringInit(&s[i]);
  return t;
}

static TF_Tensor *new_tensor(int dtype, const int64_t *dims, int ndim) {
  if (!dtype_name(dtype)) die("unsupported dtype %s", dtype_str(dtype));
  if (dtype == TF_STRING) return new_string_tensor(dims, ndim);
  int64_t n = num_elements(dims, ndim);
  TF_Tensor *t = TF_AllocateTensor(dtype, dims, ndim, n * TF_DataTypeSize(dtype));
  if (!t) die("cannot allocate a %s tensor", dtype_str(dtype));
  memset(TF_TensorData(t), 0, TF_TensorByteSize(t));
  return t;
}

typedef struct {
  char *name;
  TF_Tensor *tensor;
  int owned; /* allocated here (strings must be deallocated here too) */
} Named;

typedef struct {
  Named *items;
  int n;
} Group;

static void group_free(Group *g) {
  for (int i = 0; i < g->n; i++) {
    TF_Tensor *t = g->items[i].tensor;
    if (g->items[i].owned && TF_TensorType(t) == TF_STRING) {
      TF_TString *s = TF_TensorData(t);
      for (int64_t k = 0; k < TF_TensorElementCount(t); k++) TF_StringDealloc(&s[k]);
    }
    free(g->items[i].name);
    TF_DeleteTensor(t);
  }
  free(g->items);
  g->items = NULL;
  g->n = 0;
}

static void group_add(Group *g, char *name, TF_Tensor *t, int owned) {
  for (int i = 0; i < g->n; i++)
    if (!strcmp(g->items[i].name, name)) die("tensor %s given twice", name);
  g->items = xrealloc(g->items, (g->n + 1) * sizeof *g->items);
  g->items[g->n++] = (Named){name, t, owned};
}

/* ---------------------------------------------- protobuf wire-format reader */

typedef struct {
  const uint8_t *p, *end;
} Pb;

typedef struct {
  uint32_t field;
  int wire; /* 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
  uint64_t value;
  Pb bytes;
} PbField;

static int pb_varint(Pb *b, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (b->p >= b->end) return 0;
    uint8_t c = *b->p++;
    r |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = r;
      return 1;
    }
  }
  return 0;
}

/* Next field of b into f; 0 at the end. Dies on malformed input (what). */
static int pb_next(Pb *b, PbField *f, const char *what) {
  if (b->p >= b->end) return 0;
  uint64_t key;
  if (!pb_varint(b, &key)) die("%s: malformed protobuf (field key)", what);
  f->field = (uint32_t)(key >> 3);
  f->wire = (int)(key & 7);
  switch (f->wire) {
    case 0:
      if (!pb_varint(b, &f->value)) die("%s: malformed protobuf (varint)", what);
      break;
    case 1:
    case 5: {
      size_t n = f->wire == 1 ? 8 : 4;
      if ((size_t)(b->end - b->p) < n) die("%s: malformed protobuf (fixed)", what);
      uint64_t v = 0;
      for (size_t i = 0; i < n; i++) v |= (uint64_t)b->p[i] << (8 * i);
      f->value = v;
      f->bytes = (Pb){b->p, b->p + n};
      b->p += n;
      break;
    }
    case 2: {
      uint64_t n;
      if (!pb_varint(b, &n) || n > (uint64_t)(b->end - b->p))
        die("%s: malformed protobuf (length)", what);
      f->bytes = (Pb){b->p, b->p + n};
      b->p += n;
      break;
    }
    default:
      die("%s: unsupported protobuf wire type %d", what, f->wire);
  }
  return 1;
}

static char *pb_string(const PbField *f) {
  return xstrndup((const char *)f->bytes.p, (size_t)(f->bytes.end - f->bytes.p));
}

/* TensorShapeProto: dim = 2 {size = 1}, unknown_rank = 3. Returns the rank, or -1
 * when the rank is unknown. */
static int parse_shape(Pb b, int64_t *dims, const char *what) {
  PbField f;
  int ndim = 0, unknown = 0;
  while (pb_next(&b, &f, what)) {
    if (f.field == 2 && f.wire == 2) {
      if (ndim == MAX_DIMS) die("%s: more than %d dimensions", what, MAX_DIMS);
      int64_t size = 0;
      Pb d = f.bytes;
      PbField g;
      while (pb_next(&d, &g, what))
        if (g.field == 1 && g.wire == 0) size = (int64_t)g.value;
      dims[ndim++] = size;
    } else if (f.field == 3 && f.wire == 0) {
      unknown = f.value != 0;
    }
  }
  return unknown ? -1 : ndim;
}

/* ---------------------------------------------- signatures (MetaGraphDef) */

typedef struct {
  char *key;    /* signature input/output key */
  char *tensor; /* "op:index" */
  int dtype;
  int rank; /* -1: unknown */
  int64_t dims[MAX_DIMS];
} TensorInfo;

typedef struct {
  char *key;
  TensorInfo *in, *out;
  int n_in, n_out;
} Signature;

typedef struct {
  Signature *sigs;
  int n;
  char *restore_op;      /* SaverDef.restore_op_name */
  char *filename_tensor; /* SaverDef.filename_tensor_name */
} Meta;

/* map<string, TensorInfo> entry: key = 1, value = 2 {name = 1, dtype = 2,
 * tensor_shape = 3}. */
static void parse_tensor_info_entry(Pb b, TensorInfo *ti) {
  memset(ti, 0, sizeof *ti);
  ti->rank = -1;
  PbField f;
  while (pb_next(&b, &f, "signature_def")) {
    if (f.field == 1 && f.wire == 2) {
      free(ti->key);
      ti->key = pb_string(&f);
    } else if (f.field == 2 && f.wire == 2) {
      Pb v = f.bytes;
      PbField g;
      while (pb_next(&v, &g, "TensorInfo")) {
        if (g.field == 1 && g.wire == 2) {
          free(ti->tensor);
          ti->tensor = pb_string(&g);
        } else if (g.field == 2 && g.wire == 0) {
          ti->dtype = (int)g.value;
        } else if (g.field == 3 && g.wire == 2) {
          ti->rank = parse_shape(g.bytes, ti->dims, "TensorInfo.tensor_shape");
        }
      }
    }
  }
  if (!ti->key) ti->key = xstrndup("", 0);
}

static void parse_signature_entry(Pb b, Signature *s) {
  memset(s, 0, sizeof *s);
  PbField f;
  while (pb_next(&b, &f, "signature_def")) {
    if (f.field == 1 && f.wire == 2) {
      free(s->key);
      s->key = pb_string(&f);
    } else if (f.field == 2 && f.wire == 2) { /* SignatureDef */
      Pb d = f.bytes;
      PbField g;
      while (pb_next(&d, &g, "SignatureDef")) {
        if ((g.field == 1 || g.field == 2) && g.wire == 2) {
          TensorInfo **arr = g.field == 1 ? &s->in : &s->out;
          int *n = g.field == 1 ? &s->n_in : &s->n_out;
          *arr = xrealloc(*arr, (*n + 1) * sizeof **arr);
          parse_tensor_info_entry(g.bytes, &(*arr)[(*n)++]);
        }
      }
    }
  }
  if (!s->key) s->key = xstrndup("", 0);
}

/* MetaGraphDef: saver_def = 3 {filename_tensor_name = 1, restore_op_name = 3},
 * signature_def = 5 (map<string, SignatureDef>). */
static Meta parse_meta_graph(const TF_Buffer *buf) {
  Meta m = {0};
  Pb b = {buf->data, (const uint8_t *)buf->data + buf->length};
  PbField f;
  while (pb_next(&b, &f, "MetaGraphDef")) {
    if (f.field == 5 && f.wire == 2) {
      m.sigs = xrealloc(m.sigs, (m.n + 1) * sizeof *m.sigs);
      parse_signature_entry(f.bytes, &m.sigs[m.n++]);
    } else if (f.field == 3 && f.wire == 2) {
      Pb s = f.bytes;
      PbField g;
      while (pb_next(&s, &g, "SaverDef")) {
        if (g.field == 1 && g.wire == 2) m.filename_tensor = pb_string(&g);
        if (g.field == 3 && g.wire == 2) m.restore_op = pb_string(&g);
      }
    }
  }
  return m;
}

static Signature *find_signature(const Meta *m, const char *key) {
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->sigs[i].key, key)) return &m->sigs[i];
  char names[1024] = "";
  for (int i = 0; i < m->n; i++) {
    if (!strncmp(m->sigs[i].key, "__", 2)) continue; /* __saved_model_init_op */
    if (*names) strncat(names, ", ", sizeof names - strlen(names) - 1);
    strncat(names, m->sigs[i].key, sizeof names - strlen(names) - 1);
  }
  die("no signature '%s'; the SavedModel has: %s", key, *names ? names : "(none)");
  return NULL;
}

static void format_dims(char *buf, size_t size, int rank, const int64_t *dims) {
  if (rank < 0) {
    snprintf(buf, size, "[?]");
    return;
  }
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < rank && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld",
                             (long long)dims[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
}

static void print_dims(FILE *out, int rank, const int64_t *dims) {
  char buf[512];
  format_dims(buf, sizeof buf, rank, dims);
  fputs(buf, out);
}

static void print_signatures(const Meta *m) {
  for (int i = 0; i < m->n; i++) {
    const Signature *s = &m->sigs[i];
    if (!strncmp(s->key, "__", 2)) continue;
    printf("signature %s\n", s->key);
    for (int k = 0; k < 2; k++) {
      const TensorInfo *arr = k ? s->out : s->in;
      for (int j = 0; j < (k ? s->n_out : s->n_in); j++) {
        printf("  %s %s %s %s ", k ? "output" : "input", arr[j].key,
               arr[j].tensor ? arr[j].tensor : "?", dtype_str(arr[j].dtype));
        print_dims(stdout, arr[j].rank, arr[j].dims);
        putchar('\n');
      }
    }
  }
}

/* "op:1" -> the graph's TF_Output. */
static TF_Output graph_output(TF_Graph *graph, const char *tensor) {
  const char *colon = strrchr(tensor, ':');
  size_t len = colon ? (size_t)(colon - tensor) : strlen(tensor);
  char *op_name = xstrndup(tensor, len);
  TF_Operation *op = TF_GraphOperationByName(graph, op_name);
  if (!op) die("the graph has no operation %s (tensor %s)", op_name, tensor);
  free(op_name);
  return (TF_Output){op, colon ? atoi(colon + 1) : 0};
}

/* ---------------------------------------------------------- tensor files */

typedef struct {
  const uint8_t *p, *end;
  const char *path;
} Reader;

static void rd(Reader *r, void *dst, size_t n) {
  if ((size_t)(r->end - r->p) < n) die("%s: truncated tensor file", r->path);
  memcpy(dst, r->p, n);
  r->p += n;
}

static uint32_t rd_u32(Reader *r) {
  uint8_t b[4];
  rd(r, b, 4);
  return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t rd_u64(Reader *r) {
  uint64_t lo = rd_u32(r);
  return lo | (uint64_t)rd_u32(r) << 32;
}

static Group read_tensor_file(const char *path) {
  size_t size;
  uint8_t *data = read_file(path, &size);
  Reader r = {data, data + size, path};
  char magic[8];
  rd(&r, magic, 8);
  if (memcmp(magic, MAGIC, 8)) die("%s is not a tensor file (bad magic)", path);
  Group g = {0};
  uint32_t count = rd_u32(&r);
  for (uint32_t i = 0; i < count; i++) {
    uint32_t name_len = rd_u32(&r);
    if (name_len > (size_t)(r.end - r.p)) die("%s: truncated tensor file", path);
    char *name = xstrndup((const char *)r.p, name_len);
    r.p += name_len;
    int dtype = (int)rd_u32(&r);
    uint32_t ndim = rd_u32(&r);
    if (ndim > MAX_DIMS) die("%s: tensor %s has %u dimensions", path, name, ndim);
    int64_t dims[MAX_DIMS];
    for (uint32_t d = 0; d < ndim; d++) dims[d] = (int64_t)rd_u64(&r);
    if (!dtype_name(dtype))
      die("%s: tensor %s has unsupported dtype %s", path, name, dtype_str(dtype));
    TF_Tensor *t = new_tensor(dtype, dims, (int)ndim);
    if (dtype == TF_STRING) {
      TF_TString *s = TF_TensorData(t);
      int64_t n = num_elements(dims, (int)ndim);
      for (int64_t k = 0; k < n; k++) {
        uint64_t len = rd_u64(&r);
        if (len > (uint64_t)(r.end - r.p)) die("%s: truncated tensor file", path);
        TF_StringCopy(&s[k], (const char *)r.p, (size_t)len);
        r.p += len;
      }
    } else {
      rd(&r, TF_TensorData(t), TF_TensorByteSize(t));
    }
    group_add(&g, name, t, 1);
  }
  if (r.p != r.end) die("%s: %zu trailing bytes", path, (size_t)(r.end - r.p));
  free(data);
  return g;
}

static void wr(FILE *f, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, f) != n) die("cannot write the output file");
}

static void wr_u32(FILE *f, uint32_t v) {
  uint8_t b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
  wr(f, b, 4);
}

static void wr_u64(FILE *f, uint64_t v) {
  wr_u32(f, (uint32_t)v);
  wr_u32(f, (uint32_t)(v >> 32));
}

static void write_group(FILE *f, const Group *g) {
  wr_u32(f, (uint32_t)g->n);
  for (int i = 0; i < g->n; i++) {
    TF_Tensor *t = g->items[i].tensor;
    int dtype = TF_TensorType(t), ndim = TF_NumDims(t);
    if (!dtype_name(dtype))
      die("output %s has unsupported dtype %s", g->items[i].name, dtype_str(dtype));
    wr_u32(f, (uint32_t)strlen(g->items[i].name));
    wr(f, g->items[i].name, strlen(g->items[i].name));
    wr_u32(f, (uint32_t)dtype);
    wr_u32(f, (uint32_t)ndim);
    for (int d = 0; d < ndim; d++) wr_u64(f, (uint64_t)TF_Dim(t, d));
    if (dtype == TF_STRING) {
      const TF_TString *s = TF_TensorData(t);
      int64_t n = TF_TensorElementCount(t);
      for (int64_t k = 0; k < n; k++) {
        wr_u64(f, TF_StringGetSize(&s[k]));
        wr(f, TF_StringGetDataPointer(&s[k]), TF_StringGetSize(&s[k]));
      }
    } else {
      wr(f, TF_TensorData(t), TF_TensorByteSize(t));
    }
  }
}

static void print_group(const Group *g) {
  for (int i = 0; i < g->n; i++) {
    TF_Tensor *t = g->items[i].tensor;
    int dtype = TF_TensorType(t), ndim = TF_NumDims(t);
    int64_t dims[MAX_DIMS];
    for (int d = 0; d < ndim && d < MAX_DIMS; d++) dims[d] = TF_Dim(t, d);
    printf("%s %s ", g->items[i].name, dtype_str(dtype));
    print_dims(stdout, ndim, dims);
    putchar(':');
    int64_t n = TF_TensorElementCount(t);
    const void *data = TF_TensorData(t);
    for (int64_t k = 0; k < n; k++) {
      switch (dtype) {
        case TF_FLOAT: printf(" %.9g", ((const float *)data)[k]); break;
        case TF_DOUBLE: printf(" %.17g", ((const double *)data)[k]); break;
        case TF_INT32: printf(" %d", ((const int32_t *)data)[k]); break;
        case TF_INT64: printf(" %lld", (long long)((const int64_t *)data)[k]); break;
        case TF_INT16: printf(" %d", ((const int16_t *)data)[k]); break;
        case TF_INT8: printf(" %d", ((const int8_t *)data)[k]); break;
        case TF_UINT8: printf(" %u", ((const uint8_t *)data)[k]); break;
        case TF_BOOL: printf(" %s", ((const uint8_t *)data)[k] ? "true" : "false"); break;
        case TF_STRING: {
          const TF_TString *s = &((const TF_TString *)data)[k];
          printf(" \"%.*s\"", (int)TF_StringGetSize(s), TF_StringGetDataPointer(s));
          break;
        }
        default: printf(" ?");
      }
    }
    putchar('\n');
  }
}

/* ------------------------------------------------------ warm-up records */

static uint32_t crc32c(const uint8_t *p, size_t n) {
  static uint32_t table[256];
  if (!table[1])
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      table[i] = c;
    }
  uint32_t c = 0xFFFFFFFFu;
  while (n--) c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

static uint32_t masked_crc(const uint8_t *p, size_t n) {
  uint32_t c = crc32c(p, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static uint32_t le32(const uint8_t *p) {
  return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Growable value list of one TensorProto field. */
typedef struct {
  int64_t *ints;
  double *reals;
  Pb *strs;
  int64_t n, cap;
} Vals;

static void vals_push(Vals *v, int kind, int64_t i, double d, Pb s) {
  if (v->n == v->cap) {
    v->cap = v->cap ? 2 * v->cap : 16;
    if (kind == 0) v->ints = xrealloc(v->ints, v->cap * sizeof *v->ints);
    if (kind == 1) v->reals = xrealloc(v->reals, v->cap * sizeof *v->reals);
    if (kind == 2) v->strs = xrealloc(v->strs, v->cap * sizeof *v->strs);
  }
  if (kind == 0) v->ints[v->n] = i;
  if (kind == 1) v->reals[v->n] = d;
  if (kind == 2) v->strs[v->n] = s;
  v->n++;
}

/* One float/double/varint value (or a packed run of them) of a repeated field. */
static void collect(Vals *v, const PbField *f, int fixed, const char *what) {
  if (fixed && f->wire == (fixed == 4 ? 5 : 1)) { /* one unpacked value */
    double d;
    if (fixed == 4) {
      float x;
      uint32_t bits = (uint32_t)f->value;
      memcpy(&x, &bits, 4);
      d = x;
    } else {
      uint64_t bits = f->value;
      memcpy(&d, &bits, 8);
    }
    vals_push(v, 1, 0, d, (Pb){0});
    return;
  }
  if (!fixed && f->wire == 0) {
    vals_push(v, 0, (int64_t)f->value, 0, (Pb){0});
    return;
  }
  if (f->wire != 2) die("%s: unexpected wire type %d", what, f->wire);
  Pb b = f->bytes; /* packed */
  while (b.p < b.end) {
    if (fixed) {
      if ((size_t)(b.end - b.p) < (size_t)fixed) die("%s: bad packed field", what);
      double d;
      if (fixed == 4) {
        float x;
        memcpy(&x, b.p, 4);
        d = x;
      } else {
        memcpy(&d, b.p, 8);
      }
      b.p += fixed;
      vals_push(v, 1, 0, d, (Pb){0});
    } else {
      uint64_t x;
      if (!pb_varint(&b, &x)) die("%s: bad packed varint", what);
      vals_push(v, 0, (int64_t)x, 0, (Pb){0});
    }
  }
}

/* TensorProto (dtype = 1, tensor_shape = 2, tensor_content = 4, float_val = 5,
 * double_val = 6, int_val = 7, string_val = 8, int64_val = 10, bool_val = 11) ->
 * TF_Tensor. As in TensorFlow, a *_val list shorter than the tensor repeats its
 * last value, and an empty one means zeros. */
static TF_Tensor *tensor_from_proto(Pb b, const char *what) {
  int dtype = 0, ndim = 0;
  int64_t dims[MAX_DIMS];
  Pb content = {0};
  int has_content = 0;
  Vals vals = {0};
  int kind = -1; /* 0 ints, 1 reals, 2 strings */
  PbField f;
  while (pb_next(&b, &f, what)) {
    switch (f.field) {
      case 1: dtype = (int)f.value; break;
      case 2:
        ndim = parse_shape(f.bytes, dims, what);
        if (ndim < 0) die("%s: tensor of unknown rank", what);
        break;
      case 4: content = f.bytes; has_content = 1; break;
      case 5: kind = 1; collect(&vals, &f, 4, what); break;
      case 6: kind = 1; collect(&vals, &f, 8, what); break;
      case 7: case 10: case 11: kind = 0; collect(&vals, &f, 0, what); break;
      case 8:
        if (f.wire != 2) die("%s: bad string_val", what);
        kind = 2;
        vals_push(&vals, 2, 0, 0, f.bytes);
        break;
      default: break; /* half_val, complex, resource, variant: unsupported dtypes */
    }
  }
  if (!dtype_name(dtype)) die("%s: unsupported dtype %s", what, dtype_str(dtype));
  TF_Tensor *t = new_tensor(dtype, dims, ndim);
  int64_t n = TF_TensorElementCount(t);
  void *data = TF_TensorData(t);
  if (has_content && dtype != TF_STRING) {
    if ((size_t)(content.end - content.p) != TF_TensorByteSize(t))
      die("%s: tensor_content holds %zu bytes, the shape needs %zu", what,
          (size_t)(content.end - content.p), TF_TensorByteSize(t));
    memcpy(data, content.p, TF_TensorByteSize(t));
  } else if (vals.n > 0) {
    int want = dtype == TF_STRING ? 2 : (dtype == TF_FLOAT || dtype == TF_DOUBLE) ? 1 : 0;
    if (kind != want) die("%s: value field does not match dtype %s", what, dtype_str(dtype));
    if (vals.n > n)
      die("%s: %lld values for a tensor of %lld elements", what, (long long)vals.n,
          (long long)n);
    for (int64_t k = 0; k < n; k++) {
      int64_t j = k < vals.n ? k : vals.n - 1;
      switch (dtype) {
        case TF_FLOAT: ((float *)data)[k] = (float)vals.reals[j]; break;
        case TF_DOUBLE: ((double *)data)[k] = vals.reals[j]; break;
        case TF_INT32: ((int32_t *)data)[k] = (int32_t)vals.ints[j]; break;
        case TF_INT64: ((int64_t *)data)[k] = vals.ints[j]; break;
        case TF_INT16: ((int16_t *)data)[k] = (int16_t)vals.ints[j]; break;
        case TF_INT8: ((int8_t *)data)[k] = (int8_t)vals.ints[j]; break;
        case TF_UINT8: ((uint8_t *)data)[k] = (uint8_t)vals.ints[j]; break;
        case TF_BOOL: ((uint8_t *)data)[k] = vals.ints[j] != 0; break;
        case TF_STRING: {
          Pb s = vals.strs[j];
          TF_StringCopy(&((TF_TString *)data)[k], (const char *)s.p,
                        (size_t)(s.end - s.p));
          break;
        }
      }
    }
  }
  free(vals.ints);
  free(vals.reals);
  free(vals.strs);
  return t;
}

/* PredictionLog: predict_log = 6 {request = 1 {model_spec = 1 {name = 1,
 * signature_name = 3}, inputs = 2 (map<string, TensorProto>)}}. */
static Group parse_prediction_log(Pb b, char **signature, char **model, int record) {
  char what[64];
  snprintf(what, sizeof what, "warm-up record %d", record);
  Group g = {0};
  int found = 0;
  PbField f;
  while (pb_next(&b, &f, what)) {
    if (f.field != 6 || f.wire != 2) {
      if (f.field >= 2 && f.field <= 5)
        die("%s: only predict_log records are supported (found field %u)", what,
            f.field);
      continue;
    }
    Pb pl = f.bytes;
    PbField g1;
    while (pb_next(&pl, &g1, what)) {
      if (g1.field != 1 || g1.wire != 2) continue; /* request */
      found = 1;
      Pb req = g1.bytes;
      PbField g2;
      while (pb_next(&req, &g2, what)) {
        if (g2.field == 1 && g2.wire == 2) { /* model_spec */
          Pb ms = g2.bytes;
          PbField g3;
          while (pb_next(&ms, &g3, what)) {
            if (g3.field == 1 && g3.wire == 2) *model = pb_string(&g3);
            if (g3.field == 3 && g3.wire == 2) *signature = pb_string(&g3);
          }
        } else if (g2.field == 2 && g2.wire == 2) { /* inputs entry */
          Pb e = g2.bytes;
          PbField g3;
          char *key = NULL;
          Pb value = {0};
          int has_value = 0;
          while (pb_next(&e, &g3, what)) {
            if (g3.field == 1 && g3.wire == 2) key = pb_string(&g3);
            if (g3.field == 2 && g3.wire == 2) value = g3.bytes, has_value = 1;
          }
          if (!key) key = xstrndup("", 0);
          char twhat[200];
          snprintf(twhat, sizeof twhat, "%s, input %s", what, key);
          TF_Tensor *t = has_value ? tensor_from_proto(value, twhat) : NULL;
          if (!t) die("%s: no tensor", twhat);
          group_add(&g, key, t, 1);
        }
      }
    }
  }
  if (!found) die("%s: no predict_log.request", what);
  return g;
}

/* ------------------------------------------------------------------ run */

typedef struct {
  TF_Graph *graph;
  TF_Session *session;
  Meta meta;
  TF_Status *status;
  FILE *out;
  double run_seconds;
  int runs;
} Loaded;

static Group run_signature(Loaded *L, const Signature *sig, const Group *inputs) {
  for (int i = 0; i < inputs->n; i++) {
    int known = 0;
    for (int j = 0; j < sig->n_in; j++) known |= !strcmp(sig->in[j].key, inputs->items[i].name);
    if (!known) {
      char names[1024] = "";
      for (int j = 0; j < sig->n_in; j++) {
        if (j) strncat(names, ", ", sizeof names - strlen(names) - 1);
        strncat(names, sig->in[j].key, sizeof names - strlen(names) - 1);
      }
      die("input '%s' is not an input of signature '%s', which takes: %s",
          inputs->items[i].name, sig->key, names);
    }
  }
  int n_in = sig->n_in, n_out = sig->n_out;
  TF_Output *in_ops = xmalloc(n_in * sizeof *in_ops);
  TF_Tensor **in_vals = xmalloc(n_in * sizeof *in_vals);
  TF_Output *out_ops = xmalloc(n_out * sizeof *out_ops);
  TF_Tensor **out_vals = xmalloc(n_out * sizeof *out_vals);
  for (int j = 0; j < n_in; j++) {
    const TensorInfo *ti = &sig->in[j];
    TF_Tensor *t = NULL;
    for (int i = 0; i < inputs->n; i++)
      if (!strcmp(inputs->items[i].name, ti->key)) t = inputs->items[i].tensor;
    if (!t) die("input '%s' of signature '%s' is missing", ti->key, sig->key);
    if ((int)TF_TensorType(t) != ti->dtype)
      die("input '%s' has dtype %s; signature '%s' takes %s", ti->key,
          dtype_str(TF_TensorType(t)), sig->key, dtype_str(ti->dtype));
    if (ti->rank >= 0) {
      int ok = TF_NumDims(t) == ti->rank;
      for (int d = 0; ok && d < ti->rank; d++)
        ok = ti->dims[d] < 0 || ti->dims[d] == TF_Dim(t, d);
      if (!ok) {
        int64_t dims[MAX_DIMS];
        int nd = TF_NumDims(t);
        for (int d = 0; d < nd && d < MAX_DIMS; d++) dims[d] = TF_Dim(t, d);
        char got[256], want[256];
        format_dims(got, sizeof got, nd, dims);
        format_dims(want, sizeof want, ti->rank, ti->dims);
        die("input '%s' has shape %s; signature '%s' takes %s (-1: any size)", ti->key,
            got, sig->key, want);
      }
    }
    in_ops[j] = graph_output(L->graph, ti->tensor);
    in_vals[j] = t;
  }
  for (int j = 0; j < n_out; j++) out_ops[j] = graph_output(L->graph, sig->out[j].tensor);
  double t0 = now();
  TF_SessionRun(L->session, NULL, in_ops, in_vals, n_in, out_ops, out_vals, n_out,
                NULL, 0, NULL, L->status);
  L->run_seconds += now() - t0;
  L->runs++;
  check(L->status, "TF_SessionRun");
  Group out = {0};
  for (int j = 0; j < n_out; j++)
    group_add(&out, xstrndup(sig->out[j].key, strlen(sig->out[j].key)), out_vals[j], 0);
  free(in_ops);
  free(in_vals);
  free(out_ops);
  free(out_vals);
  return out;
}

static void emit(Loaded *L, const Group *out) {
  if (L->out)
    write_group(L->out, out);
  else
    print_group(out);
}

static int replay_warmup(Loaded *L, const char *dir) {
  size_t len = strlen(dir) + sizeof WARMUP_FILE + 2;
  char *path = xmalloc(len);
  snprintf(path, len, "%s/%s", dir, WARMUP_FILE);
  struct stat st;
  if (stat(path, &st) != 0) die("no warm-up file: %s is missing", path);
  size_t size;
  uint8_t *data = read_file(path, &size);
  size_t pos = 0;
  int record = 0;
  while (pos < size) {
    if (size - pos < 12) die("%s: truncated record header (record %d)", path, record);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)data[pos + i] << (8 * i);
    if (masked_crc(data + pos, 8) != le32(data + pos + 8))
      die("%s: record %d: length CRC mismatch (corrupt file)", path, record);
    pos += 12;
    if (n > size - pos || size - pos - n < 4)
      die("%s: record %d: truncated (needs %llu bytes)", path, record,
          (unsigned long long)n);
    if (masked_crc(data + pos, (size_t)n) != le32(data + pos + n))
      die("%s: record %d: data CRC mismatch (corrupt file)", path, record);
    char *signature = NULL, *model = NULL;
    Group in = parse_prediction_log((Pb){data + pos, data + pos + n}, &signature,
                                    &model, record);
    const Signature *sig = find_signature(
        &L->meta, signature && *signature ? signature : "serving_default");
    Group out = run_signature(L, sig, &in);
    emit(L, &out);
    group_free(&out);
    group_free(&in);
    free(signature);
    free(model);
    pos += n + 4;
    record++;
  }
  if (record == 0) die("%s holds no records", path);
  free(data);
  free(path);
  return record;
}

/* A second session on the loaded graph with the variables restored the way
 * LoadSavedModel restores them (SaverDef's restore op fed with
 * <dir>/variables/variables) but without the init op. */
static TF_Session *session_without_init(Loaded *L, const char *dir) {
  TF_SessionOptions *opts = TF_NewSessionOptions();
  TF_Session *s = TF_NewSession(L->graph, opts, L->status);
  TF_DeleteSessionOptions(opts);
  check(L->status, "TF_NewSession");
  size_t len = strlen(dir) + 64;
  char *prefix = xmalloc(len), *index = xmalloc(len);
  snprintf(prefix, len, "%s/variables/variables", dir);
  snprintf(index, len, "%s.index", prefix);
  struct stat st;
  if (L->meta.restore_op && L->meta.filename_tensor && stat(index, &st) == 0) {
    int64_t dims[1] = {0};
    TF_Tensor *name = new_string_tensor(dims, 0);
    TF_StringCopy(TF_TensorData(name), prefix, strlen(prefix));
    TF_Output feed = graph_output(L->graph, L->meta.filename_tensor);
    const char *colon = strrchr(L->meta.restore_op, ':');
    char *op_name = xstrndup(L->meta.restore_op, colon ? (size_t)(colon - L->meta.restore_op)
                                                       : strlen(L->meta.restore_op));
    const TF_Operation *restore = TF_GraphOperationByName(L->graph, op_name);
    if (!restore) die("the graph has no restore op %s", op_name);
    TF_SessionRun(s, NULL, &feed, &name, 1, NULL, NULL, 0, &restore, 1, NULL, L->status);
    check(L->status, "restoring variables (--no-init)");
    TF_StringDealloc(TF_TensorData(name));
    TF_DeleteTensor(name);
    free(op_name);
  }
  free(prefix);
  free(index);
  return s;
}

static void usage(void) {
  fputs("usage: loader VERSION_DIR [--signature NAME] [--inputs FILE] [--warmup] "
        "[--out FILE] [--no-init] [VERSION_DIR [options]]... [--timing]\n",
        stderr);
  exit(2);
}

typedef struct {
  const char *dir, *signature, *inputs, *out;
  int warmup, no_init;
} Job;

static void free_meta(Meta *m) {
  for (int i = 0; i < m->n; i++) {
    Signature *s = &m->sigs[i];
    for (int k = 0; k < s->n_in; k++) free(s->in[k].key), free(s->in[k].tensor);
    for (int k = 0; k < s->n_out; k++) free(s->out[k].key), free(s->out[k].tensor);
    free(s->in);
    free(s->out);
    free(s->key);
  }
  free(m->sigs);
  free(m->restore_op);
  free(m->filename_tensor);
}

/* Loads one version, runs what the job asks, unloads it. */
static void run_job(const Job *job, TF_Status *status, int timing) {
  const char *dir = job->dir;
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    die("no exported version at %s (not a directory)", dir);
  char *pb = xmalloc(strlen(dir) + 32);
  sprintf(pb, "%s/saved_model.pb", dir);
  if (stat(pb, &st) != 0) die("%s is not a SavedModel: %s is missing", dir, pb);
  free(pb);

  Loaded L = {0};
  L.status = status;
  L.graph = TF_NewGraph();
  TF_SessionOptions *opts = TF_NewSessionOptions();
  TF_Buffer *meta = TF_NewBuffer();
  const char *tags[] = {"serve"};
  double t0 = now();
  L.session = TF_LoadSessionFromSavedModel(opts, NULL, dir, tags, 1, L.graph, meta,
                                           L.status);
  check(L.status, "TF_LoadSessionFromSavedModel");
  double load_seconds = now() - t0;
  TF_DeleteSessionOptions(opts);
  L.meta = parse_meta_graph(meta);
  TF_DeleteBuffer(meta);
  TF_Session *loaded = NULL;
  if (job->no_init) {
    loaded = L.session;
    L.session = session_without_init(&L, dir);
  }
  if (job->out) {
    L.out = fopen(job->out, "wb");
    if (!L.out) die("cannot write %s", job->out);
    wr(L.out, MAGIC, 8);
  }
  if (job->inputs) {
    Group in = read_tensor_file(job->inputs);
    Group res = run_signature(&L, find_signature(&L.meta, job->signature), &in);
    emit(&L, &res);
    group_free(&res);
    group_free(&in);
  }
  if (job->warmup) replay_warmup(&L, dir);
  if (!job->inputs && !job->warmup) print_signatures(&L.meta);
  if (L.out && fclose(L.out) != 0) die("cannot write %s", job->out);
  if (timing)
    fprintf(stderr, "loader: %s: load %.3f s, %d runs in %.3f ms\n", dir, load_seconds,
            L.runs, L.run_seconds * 1e3);
  TF_Session *sessions[2] = {L.session, loaded};
  for (int i = 0; i < 2; i++) {
    if (!sessions[i]) continue;
    TF_CloseSession(sessions[i], L.status);
    check(L.status, "TF_CloseSession");
    TF_DeleteSession(sessions[i], L.status);
    check(L.status, "TF_DeleteSession");
  }
  TF_DeleteGraph(L.graph);
  free_meta(&L.meta);
}

/* Each VERSION_DIR starts a job; the options after it apply to that job. Several
 * jobs in one process pay TensorFlow's start-up (about 0.2-0.8 s) once. */
int main(int argc, char **argv) {
  Job *jobs = NULL;
  int n = 0, timing = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    Job *j = n ? &jobs[n - 1] : NULL;
    int has_value = i + 1 < argc;
    if (!strcmp(a, "--timing")) timing = 1;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) usage();
    else if (a[0] != '-') {
      jobs = xrealloc(jobs, (n + 1) * sizeof *jobs);
      jobs[n++] = (Job){a, "serving_default", NULL, NULL, 0, 0};
    } else if (!j) {
      fprintf(stderr, "loader: error: %s before any VERSION_DIR\n", a);
      usage();
    } else if (!strcmp(a, "--signature") && has_value) j->signature = argv[++i];
    else if (!strcmp(a, "--inputs") && has_value) j->inputs = argv[++i];
    else if (!strcmp(a, "--out") && has_value) j->out = argv[++i];
    else if (!strcmp(a, "--warmup")) j->warmup = 1;
    else if (!strcmp(a, "--no-init")) j->no_init = 1;
    else {
      fprintf(stderr, "loader: error: unexpected argument %s\n", a);
      usage();
    }
  }
  if (!n) usage();
  TF_Status *status = TF_NewStatus();
  for (int i = 0; i < n; i++) {
    error_context = n > 1 ? jobs[i].dir : NULL;
    run_job(&jobs[i], status, timing);
  }
  TF_DeleteStatus(status);
  free(jobs);
  return 0;
}
