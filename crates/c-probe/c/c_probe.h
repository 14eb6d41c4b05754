/* Shared preamble of the C probes run by the Rust `c-probe` crate (which passes this directory
 * with -I). A probe prints one "NAME VALUE" line per fact; the Rust test compares each line with
 * the value it computes itself. */
#ifndef C_PROBE_H
#define C_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "name value", the value as an unsigned decimal. */
#define NUM(name, expr) printf("%s %llu\n", (name), (unsigned long long)(expr))
/* A macro or enumerator under its own name. */
#define CONST(name) NUM(#name, name)
/* sizeof(struct s) as "sizeof.s". */
#define SIZE(s) NUM("sizeof." #s, sizeof(struct s))
/* offsetof(struct s, f) as "offsetof.s.f". */
#define OFF(s, f) NUM("offsetof." #s "." #f, offsetof(struct s, f))

/* What main returns: 1 if writing the lines failed, so the test never reads a cut-off list. */
#define PROBE_STATUS() (ferror(stdout) ? 1 : 0)

#endif
