/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "svmctl-table.h"

struct Table {
        size_t n_columns;
        char **columns;
        bool *right;
        size_t n_rows;
        char **cells;           /* n_rows × n_columns */
};

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_columns; i++)
                free(t->columns[i]);
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->columns);
        free(t->right);
        free(t->cells);
        free(t);
        return NULL;
}

int table_new(Table **ret, const char *const *columns) {
        Table *t;
        size_t n = 0;

        while (columns[n])
                n++;
        t = calloc(1, sizeof(Table));
        if (!t)
                return -ENOMEM;
        t->columns = calloc(n ?: 1, sizeof(char *));
        t->right = calloc(n ?: 1, sizeof(bool));
        if (!t->columns || !t->right) {
                table_free(t);
                return -ENOMEM;
        }
        t->n_columns = n;
        for (size_t i = 0; i < n; i++) {
                const char *c = columns[i];

                t->right[i] = c[0] == '>';
                t->columns[i] = strdup(c + t->right[i]);
                if (!t->columns[i]) {
                        table_free(t);
                        return -ENOMEM;
                }
        }
        *ret = t;
        return 0;
}

int table_add_row(Table *t, const char *const *cells) {
        char **p;

        p = reallocarray(t->cells, (t->n_rows + 1) * t->n_columns ?: 1, sizeof(char *));
        if (!p)
                return -ENOMEM;
        t->cells = p;
        for (size_t i = 0; i < t->n_columns; i++) {
                p[t->n_rows * t->n_columns + i] = strdup(cells[i] ?: "-");
                if (!p[t->n_rows * t->n_columns + i]) {
                        for (size_t j = 0; j < i; j++)
                                free(p[t->n_rows * t->n_columns + j]);
                        return -ENOMEM;
                }
        }
        t->n_rows++;
        return 0;
}

size_t table_n_rows(const Table *t) {
        return t->n_rows;
}

static void print_cell(const char *s, size_t width, bool right, bool last) {
        if (right)
                printf("%*s", (int) width, s);
        else if (last)
                fputs(s, stdout);
        else
                printf("%-*s", (int) width, s);
}

int table_print(const Table *t, const char *empty_message) {
        _cleanup_free_ size_t *width = NULL;

        if (t->n_rows == 0) {
                if (empty_message)
                        printf("%s\n", empty_message);
                return 0;
        }
        width = calloc(t->n_columns ?: 1, sizeof(size_t));
        if (!width)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_columns; i++) {
                width[i] = strlen(t->columns[i]);
                for (size_t r = 0; r < t->n_rows; r++)
                        width[i] = MAX(width[i], strlen(t->cells[r * t->n_columns + i]));
        }
        for (size_t i = 0; i < t->n_columns; i++) {
                print_cell(t->columns[i], width[i], t->right[i], i + 1 == t->n_columns);
                fputs(i + 1 == t->n_columns ? "\n" : "  ", stdout);
        }
        for (size_t r = 0; r < t->n_rows; r++)
                for (size_t i = 0; i < t->n_columns; i++) {
                        print_cell(t->cells[r * t->n_columns + i], width[i], t->right[i], i + 1 == t->n_columns);
                        fputs(i + 1 == t->n_columns ? "\n" : "  ", stdout);
                }
        return 0;
}
