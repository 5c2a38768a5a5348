/* dlib's shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014), read from
 * dlib's own .dat files and evaluated exactly as dlib's shape_predictor::operator() does.
 *
 * Why it exists: dlib's Python binding holds the GIL for the whole prediction (~3 ms for the
 * 5-point model, ~6 ms for the 68-point one on this machine), so landmarks serialised every
 * thread of a video job or of the HTTP server. Called through ctypes, which releases the GIL,
 * this runs beside decoding, detection and embedding. bench/shape_forest.py is the same
 * algorithm in numpy, step by step, with the details of dlib's arithmetic it reproduces.
 *
 * Built as a Python extension module only so that pip builds it with the package; its
 * functions are called through ctypes (candor/models/ert.py). */

#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* leaves fetched ahead of the one being added */
#define AHEAD 16

typedef struct {
    int points;          /* landmarks P; a shape is 2P floats */
    int levels;          /* cascade levels */
    int trees;           /* trees per level */
    int splits;          /* splits per tree (2^depth - 1) */
    int features;        /* feature pixels per level */
    float *initial;      /* 2P */
    int32_t *idx;        /* levels * trees * splits * 2 */
    float *thresh;       /* levels * trees * splits */
    float *leaves;       /* levels * trees * (splits + 1) * 2P */
    int32_t *anchor;     /* levels * features */
    float *deltas;       /* levels * features * 2 */
} ert_model;

typedef struct {
    const uint8_t *p, *end;
    const char *error;
} reader;

/* A dlib integer: a control byte (low nibble: the number of little-endian bytes that follow,
 * bit 7: the sign), then the bytes. */
static int64_t read_int(reader *r) {
    if (r->error) return 0;
    if (r->p >= r->end) { r->error = "shape predictor ends early"; return 0; }
    uint8_t ctrl = *r->p++;
    int size = ctrl & 15;
    if (size > 8) { r->error = "bad integer control byte in the shape predictor"; return 0; }
    if (r->end - r->p < size) { r->error = "shape predictor ends early"; return 0; }
    uint64_t v = 0;
    for (int i = 0; i < size; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += size;
    return (ctrl & 0x80) ? -(int64_t)v : (int64_t)v;
}

/* read_int where at least 9 bytes remain (one unaligned 8-byte load, masked): the 68-point
 * model is 35 million integers, and this is most of its loading time */
static inline int64_t read_int_fast(reader *r) {
    if (r->end - r->p < 9 || (*r->p & 15) > 8 || r->error) return read_int(r);
    uint8_t ctrl = *r->p;
    int size = ctrl & 15;
    uint64_t v = 0;
    if (size) {
        memcpy(&v, r->p + 1, 8);
        if (size < 8) v &= ((uint64_t)1 << (8 * size)) - 1;
    }
    r->p += 1 + size;
    return (ctrl & 0x80) ? -(int64_t)v : (int64_t)v;
}

/* A dlib float: mantissa and exponent, two integers. */
static float read_float(reader *r) {
    int64_t mantissa = read_int_fast(r);
    int64_t exponent = read_int_fast(r);
    if (r->error) return 0;
    if (exponent >= 32000 || exponent <= -32000) {
        r->error = "shape predictor holds an infinite or NaN value";
        return 0;
    }
    if (exponent >= -1022 && exponent <= 1023 && mantissa > -((int64_t)1 << 53)
        && mantissa < ((int64_t)1 << 53)) {
        /* the same value as ldexp, faster: an exact integer times an exact power of two,
         * rounded once (as ldexp rounds) */
        uint64_t bits = (uint64_t)(exponent + 1023) << 52;
        double scale;
        memcpy(&scale, &bits, sizeof scale);
        return (float)((double)mantissa * scale);
    }
    return (float)ldexp((double)mantissa, (int)exponent);
}

static int64_t read_count(reader *r, int64_t limit, const char *what) {
    int64_t n = read_int(r);
    if (!r->error && (n < 0 || n > limit)) r->error = what;
    return r->error ? 0 : n;
}

/* A dlib matrix<float,0,1>: -rows, -1, then the values, into out[expected]. */
static void read_column(reader *r, float *out, int expected) {
    int64_t rows = -read_int(r), cols = -read_int(r);
    if (r->error) return;
    if (cols != 1 || rows != expected) { r->error = "a column vector of the wrong size"; return; }
    for (int i = 0; i < expected && !r->error; i++) out[i] = read_float(r);
}

/* The leaves are read at random, a few hundred bytes at a time: on huge pages (where the
 * kernel gives them) each read costs no page-table walk. */
static float *leaf_memory(size_t bytes) {
    size_t huge = (size_t)2 << 20;
    size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

void ert_free(void *handle) {
    ert_model *m = handle;
    if (!m) return;
    free(m->initial); free(m->idx); free(m->thresh); free(m->leaves); free(m->anchor);
    free(m->deltas); free(m);
}

/* Parse a serialised dlib shape_predictor (version 1). NULL on failure, with the reason in
 * error (errlen bytes). Every level must have the same number of trees of the same depth and
 * the same number of feature pixels, as dlib's trainer makes them. */
void *ert_load(const uint8_t *data, size_t size, char *error, size_t errlen) {
    reader r = {data, data + size, NULL};
    ert_model *m = calloc(1, sizeof *m);
    if (!m) { snprintf(error, errlen, "out of memory"); return NULL; }
    if (read_int(&r) != 1 && !r.error) r.error = "unknown shape predictor version";
    int64_t rows = r.error ? 0 : -read_int(&r), cols = r.error ? 0 : -read_int(&r);
    if (!r.error && (cols != 1 || rows <= 0 || rows > 2000 || rows % 2)) r.error = "bad initial shape";
    if (!r.error) {
        m->points = (int)(rows / 2);
        m->initial = malloc(sizeof(float) * rows);
        if (!m->initial) r.error = "out of memory";
        for (int i = 0; i < rows && !r.error; i++) m->initial[i] = read_float(&r);
    }
    m->levels = (int)read_count(&r, 1000, "too many cascade levels");
    int dims = 2 * m->points;
    for (int level = 0; level < m->levels && !r.error; level++) {
        int trees = (int)read_count(&r, 100000, "too many trees");
        if (r.error) break;
        if (level == 0) m->trees = trees;
        else if (trees != m->trees) { r.error = "cascade levels of different sizes"; break; }
        for (int t = 0; t < trees && !r.error; t++) {
            int splits = (int)read_count(&r, 1023, "too many splits");
            if (r.error) break;
            if (level == 0 && t == 0) {
                int depth = 0;
                while ((1 << depth) - 1 < splits) depth++;
                if ((1 << depth) - 1 != splits || splits == 0) { r.error = "trees must be complete"; break; }
                m->splits = splits;
                size_t n = (size_t)m->levels * trees;
                m->idx = malloc(sizeof(int32_t) * n * splits * 2);
                m->thresh = malloc(sizeof(float) * n * splits);
                m->leaves = leaf_memory(sizeof(float) * n * (splits + 1) * dims);
                if (!m->idx || !m->thresh || !m->leaves) { r.error = "out of memory"; break; }
            } else if (splits != m->splits) { r.error = "trees of different depths"; break; }
            size_t tree = (size_t)level * m->trees + t;
            for (int s = 0; s < splits && !r.error; s++) {
                m->idx[(tree * splits + s) * 2] = (int32_t)read_int(&r);
                m->idx[(tree * splits + s) * 2 + 1] = (int32_t)read_int(&r);
                m->thresh[tree * splits + s] = read_float(&r);
            }
            if (read_count(&r, 1024, "bad leaf count") != splits + 1 && !r.error)
                r.error = "a regression tree must have one more leaf than splits";
            for (int l = 0; l <= splits && !r.error; l++)
                read_column(&r, m->leaves + (tree * (splits + 1) + l) * dims, dims);
        }
    }
    if (!r.error && read_int(&r) != m->levels) r.error = "anchor indices do not match the cascade";
    for (int level = 0; level < m->levels && !r.error; level++) {
        int features = (int)read_count(&r, 100000, "too many feature pixels");
        if (r.error) break;
        if (level == 0) {
            m->features = features;
            m->anchor = malloc(sizeof(int32_t) * (size_t)m->levels * features + 1);
            m->deltas = malloc(sizeof(float) * (size_t)m->levels * features * 2 + 1);
            if (!m->anchor || !m->deltas) { r.error = "out of memory"; break; }
        } else if (features != m->features) { r.error = "levels with different feature pixels"; break; }
        for (int f = 0; f < features && !r.error; f++) {
            int64_t a = read_int(&r);
            if (a < 0 || a >= m->points) r.error = "an anchor outside the shape";
            m->anchor[(size_t)level * features + f] = (int32_t)a;
        }
    }
    if (!r.error && read_int(&r) != m->levels) r.error = "pixel deltas do not match the cascade";
    for (int level = 0; level < m->levels && !r.error; level++) {
        if (read_count(&r, 100000, "bad delta count") != m->features && !r.error)
            r.error = "deltas and anchors of different sizes";
        for (int f = 0; f < 2 * m->features && !r.error; f++)
            m->deltas[(size_t)level * m->features * 2 + f] = read_float(&r);
    }
    if (!r.error && r.p != r.end) r.error = "trailing data after the shape predictor";
    if (!r.error && m->levels == 0) r.error = "a shape predictor without levels";
    /* every split must name two feature pixels */
    size_t n_idx = (size_t)m->levels * m->trees * m->splits * 2;
    for (size_t i = 0; i < n_idx && !r.error; i++)
        if (m->idx[i] < 0 || m->idx[i] >= m->features) r.error = "a split outside the feature pixels";
    if (r.error) {
        snprintf(error, errlen, "%s", r.error);
        ert_free(m);
        return NULL;
    }
    return m;
}

int ert_points(void *handle) { return ((ert_model *)handle)->points; }

/* dlib's find_similarity_transform from the initial shape to the current one (Umeyama, in
 * double; in two dimensions the closed form c R = [[a, -b], [b, a]]). */
static void similarity(const float *src, const float *dst, int n, float *a_out, float *b_out) {
    double sx = 0, sy = 0, dx = 0, dy = 0;
    for (int i = 0; i < n; i++) {
        sx += src[2 * i]; sy += src[2 * i + 1]; dx += dst[2 * i]; dy += dst[2 * i + 1];
    }
    sx /= n; sy /= n; dx /= n; dy /= n;
    double var = 0, c00 = 0, c01 = 0, c10 = 0, c11 = 0;
    for (int i = 0; i < n; i++) {
        double ax = src[2 * i] - sx, ay = src[2 * i + 1] - sy;
        double bx = dst[2 * i] - dx, by = dst[2 * i + 1] - dy;
        var += ax * ax + ay * ay;
        c00 += bx * ax; c01 += bx * ay; c10 += by * ax; c11 += by * ay;
    }
    if (var == 0) { *a_out = 1; *b_out = 0; return; }
    *a_out = (float)((c00 + c11) / var);
    *b_out = (float)((c10 - c01) / var);
}

/* Landmarks of n faces of one image. pixels: height x width x channels (1 or 3) uint8 rows of
 * `stride` bytes; rects: n x (left, top, right, bottom), inclusive as dlib.rectangle; out:
 * n x points x 2 floats (the rounded pixel coordinates dlib returns). 0 on success. */
int ert_predict(void *handle, const uint8_t *pixels, int height, int width, int channels,
                int64_t stride, const int32_t *rects, int n, float *out) {
    const ert_model *m = handle;
    int dims = 2 * m->points;
    float *shape = malloc(sizeof(float) * dims);
    float *values = malloc(sizeof(float) * (m->features + 1));
    const float **chosen = malloc(sizeof(float *) * m->trees);
    if (!shape || !values || !chosen) { free(shape); free(values); free(chosen); return -1; }
    for (int face = 0; face < n; face++) {
        const int32_t *rect = rects + 4 * face;
        double left = rect[0], top = rect[1];
        double scale_x = (double)rect[2] - rect[0], scale_y = (double)rect[3] - rect[1];
        memcpy(shape, m->initial, sizeof(float) * dims);
        for (int level = 0; level < m->levels; level++) {
            float a, b;
            similarity(m->initial, shape, m->points, &a, &b);
            const int32_t *anchor = m->anchor + (size_t)level * m->features;
            const float *delta = m->deltas + (size_t)level * m->features * 2;
            for (int f = 0; f < m->features; f++) {
                float ddx = delta[2 * f], ddy = delta[2 * f + 1];
                float mx = a * ddx + (-b) * ddy;
                float my = b * ddx + a * ddy;
                mx += shape[2 * anchor[f]];
                my += shape[2 * anchor[f] + 1];
                double px = floor((double)mx * scale_x + left + 0.5);
                double py = floor((double)my * scale_y + top + 0.5);
                float v = 0;
                if (px >= 0 && px < width && py >= 0 && py < height) {
                    const uint8_t *p = pixels + (int64_t)py * stride + (int64_t)px * channels;
                    v = channels == 1 ? p[0] : (float)(((unsigned)p[0] + p[1] + p[2]) / 3);
                }
                values[f] = v;
            }
            /* which leaf each tree chooses depends only on the feature pixels: find them all
             * first, then add the leaves tree after tree (dlib's order, float by float) while
             * the next leaves are fetched: the 68-point model's leaves are 65 MB, read at
             * random, and waiting for each one in turn was most of the time */
            size_t tree0 = (size_t)level * m->trees;
            for (int t = 0; t < m->trees; t++) {
                size_t tree = tree0 + t;
                const int32_t *idx = m->idx + tree * m->splits * 2;
                const float *thresh = m->thresh + tree * m->splits;
                int node = 0;
                while (node < m->splits)
                    node = 2 * node + 2 - (values[idx[2 * node]] - values[idx[2 * node + 1]] > thresh[node]);
                chosen[t] = m->leaves + (tree * (m->splits + 1) + (node - m->splits)) * dims;
            }
            for (int t = 0; t < m->trees; t++) {
                if (t + AHEAD < m->trees)
                    for (int off = 0; off < dims; off += 16) __builtin_prefetch(chosen[t + AHEAD] + off);
                const float *leaf = chosen[t];
                for (int d = 0; d < dims; d++) shape[d] += leaf[d];
            }
        }
        float *o = out + (size_t)face * dims;
        for (int i = 0; i < m->points; i++) {
            o[2 * i] = (float)floor((double)shape[2 * i] * scale_x + left + 0.5);
            o[2 * i + 1] = (float)floor((double)shape[2 * i + 1] * scale_y + top + 0.5);
        }
    }
    free(shape);
    free(values);
    free(chosen);
    return 0;
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ert",
    "dlib's shape predictor in C, called through ctypes (candor.models.ert).", -1, NULL,
};

PyMODINIT_FUNC PyInit__ert(void) { return PyModule_Create(&module); }
