/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Intrusive doubly linked lists, in the manner of systemd's list.h: an item carries its own
 * links, the two fields named by prev and next, and the list is its head (and, for lists that
 * append, its tail). An item is on at most one list through one pair of links. The item is
 * evaluated once; head and tail are lvalues that may be evaluated more than once.
 */

#include <stddef.h>

/* Put item first on the list at head. */
#define LIST_PREPEND(head, item, prev, next)                                    \
        do {                                                                    \
                typeof(item) _item = (item);                                    \
                _item->prev = NULL;                                             \
                _item->next = (head);                                           \
                if (_item->next)                                                \
                        _item->next->prev = _item;                              \
                (head) = _item;                                                 \
        } while (0)

/* Put item last on the list at head and tail. */
#define LIST_APPEND(head, tail, item, prev, next)                               \
        do {                                                                    \
                typeof(item) _item = (item);                                    \
                _item->next = NULL;                                             \
                _item->prev = (tail);                                           \
                if (_item->prev)                                                \
                        _item->prev->next = _item;                              \
                else                                                            \
                        (head) = _item;                                         \
                (tail) = _item;                                                 \
        } while (0)

/* Take item, which is on it, off the list at head; its links are cleared. */
#define LIST_REMOVE(head, item, prev, next)                                     \
        do {                                                                    \
                typeof(item) _item = (item);                                    \
                if (_item->prev)                                                \
                        _item->prev->next = _item->next;                        \
                else                                                            \
                        (head) = _item->next;                                   \
                if (_item->next)                                                \
                        _item->next->prev = _item->prev;                        \
                _item->prev = _item->next = NULL;                               \
        } while (0)

/* The same for a list with a tail. */
#define LIST_REMOVE_TAIL(head, tail, item, prev, next)                          \
        do {                                                                    \
                typeof(item) _tail_item = (item);                               \
                if (!_tail_item->next)                                          \
                        (tail) = _tail_item->prev;                              \
                LIST_REMOVE(head, _tail_item, prev, next);                      \
        } while (0)
