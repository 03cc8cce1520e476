/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A human table: a header, rows of cells, columns padded to their widest cell. */

#include <stdbool.h>
#include <stddef.h>

typedef struct Table Table;

/* Columns named by a NULL-terminated list; a name starting with '>' is right-aligned (numbers). */
int table_new(Table **ret, const char *const *columns);
Table *table_free(Table *t);
/* Append one row: exactly as many cells as columns (copied; NULL prints "-"). */
int table_add_row(Table *t, const char *const *cells);
size_t table_n_rows(const Table *t);
/* Print to stdout; without rows, print nothing but "No entries." unless quiet_empty. */
int table_print(const Table *t, const char *empty_message);
