/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * References between callers and ranges: a Hold is the reference an Attach
 * takes; a Token is what Share hands out. A range lives while its owner or any
 * holder holds it: Free by the owner with holders left detaches the owner, and
 * the last holder's Release frees it (the lifetime rules at the end).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "identity.h"

typedef struct Manager Manager;
typedef struct Range Range;
typedef struct Client Client;
typedef struct Hold Hold;
typedef struct Token Token;

struct Hold {
        Client *client;         /* NULL for a hold restored after a restart, until its uid comes back */
        uid_t uid;
        Range *range;
        Hold *client_prev, *client_next;
        Hold *range_prev, *range_next;
        bool read_only;
        struct Revocation *revocation;  /* being revoked: released by its deadline, or taken (revoke.h) */
};

#define TOKEN_HEX_LEN 32        /* 128 bits from getrandom() */

struct Token {
        char token[TOKEN_HEX_LEN + 1];
        Range *range;
        Client *creator;        /* NULL once the creating connection is gone */
        Identity *charged;      /* whose scope counts it: the Share caller's, or after a restart the owner's */
        Token *sweep_next;      /* expired tokens being collected */
        Token *range_next;
        bool has_uid;
        uid_t uid;
        char *unit;             /* glob, NULL: any */
        char *cgroup;           /* prefix, NULL: any */
        bool read_only;
        uint64_t expires_usec;  /* CLOCK_REALTIME; 0: never */
};

int hold_new(Client *c, Range *range, bool read_only, Hold **ret);
/* A hold restored from the journal: it belongs to a uid until a connection of that uid adopts it. */
int hold_new_orphan(Range *range, uid_t uid, bool read_only, Hold **ret);
Hold *hold_free(Hold *h);
/* The client's hold on range; an orphaned hold of the client's uid is adopted. */
Hold *client_find_hold(Client *c, Range *range);

/* Tokens. */

int token_new(Manager *m, Client *creator, Range *range, Token **ret);
/* A token recorded in the journal, restored after a restart. */
int token_restore(Manager *m, Range *range, const char *hex, Token **ret);
Token *token_free(Manager *m, Token *t);
Token *manager_find_token(Manager *m, const char *token);
bool token_allows(const Token *t, const Identity *i);
/* Drop a token for good (revoked, expired), journaled. */
void token_remove(Manager *m, Token *t);
unsigned range_n_tokens(const Range *range);
unsigned range_n_holds(const Range *range);

/*
 * Drop the owner's claim (Free, or the owner's connection went): with holders
 * left the range lives on detached; without, it is freed now (or by repair).
 */
int range_release_owner(Range *range);
/* Drop a holder's reference; the last one of a detached range frees it. */
int range_release_hold(Hold *h);
/* Drop every hold uid has on range (RevokeHold): as many Releases. Returns how many, or -errno. */
int range_revoke_holds(Range *range, uid_t uid);
