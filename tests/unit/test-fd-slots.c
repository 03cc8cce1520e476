/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The fd store's slot names (daemon/fd-slots.c): short, unique, lowest first, and they fit LISTEN_FDNAMES. */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fd-slots.h"
#include "unit-assert.h"

static void test_names(void) {
        static char seen[FD_SLOTS_MAX][FD_SLOT_NAME_MAX];
        uint64_t bytes = 0;
        char name[FD_SLOT_NAME_MAX];
        uint32_t back;

        for (uint32_t s = 0; s < FD_SLOTS_MAX; s++) {
                fd_slot_name(s, name);
                ASSERT_TRUE(strlen(name) == (s < 62 ? 1 : s < 62 + 3844 ? 2 : 3));
                ASSERT_TRUE(fd_slot_from_name(name, &back));
                ASSERT_UEQ(back, s);
                memcpy(seen[s], name, sizeof(name));
                bytes += strlen(name) + 1;
        }
        /* Every name differs (round trips are unique already, but say it). */
        for (uint32_t s = 1; s < FD_SLOTS_MAX; s += 97)
                ASSERT_TRUE(strcmp(seen[s], seen[s - 1]) != 0);
        ASSERT_STREQ(seen[0], "0");
        ASSERT_STREQ(seen[61], "z");
        ASSERT_STREQ(seen[62], "00");
        ASSERT_STREQ(seen[62 + 3844], "000");
        printf("%u names take %llu bytes of %zu\n", FD_SLOTS_MAX, (unsigned long long) bytes,
               (size_t) FD_STORE_NAMES_BYTES_MAX);
        ASSERT_TRUE(bytes <= FD_STORE_NAMES_BYTES_MAX);

        /* Not slot names: older names, empty, too long, other characters, past the last slot. */
        ASSERT_FALSE(fd_slot_from_name("range-12", &back));
        ASSERT_FALSE(fd_slot_from_name("", &back));
        ASSERT_FALSE(fd_slot_from_name(NULL, &back));
        ASSERT_FALSE(fd_slot_from_name("0000", &back));
        ASSERT_FALSE(fd_slot_from_name("a:b", &back));
        ASSERT_FALSE(fd_slot_from_name("-", &back));
        ASSERT_FALSE(fd_slot_from_name("zzz", &back));
}

static void test_take_release(void) {
        FdSlots s;
        uint32_t v;

        fd_slots_init(&s);
        for (uint32_t i = 0; i < 3000; i++) {
                ASSERT_OK(fd_slots_take(&s, &v));
                ASSERT_UEQ(v, i);
        }
        fd_slots_release(&s, 7);
        fd_slots_release(&s, 1500);
        fd_slots_release(&s, 7);        /* twice: no effect */
        ASSERT_OK(fd_slots_take(&s, &v));
        ASSERT_UEQ(v, 7);
        ASSERT_OK(fd_slots_take(&s, &v));
        ASSERT_UEQ(v, 1500);
        ASSERT_OK(fd_slots_take(&s, &v));
        ASSERT_UEQ(v, 3000);
        ASSERT_ERROR(fd_slots_claim(&s, 5), EEXIST);
        ASSERT_ERROR(fd_slots_claim(&s, FD_SLOTS_MAX), ERANGE);
        ASSERT_OK(fd_slots_claim(&s, FD_SLOTS_MAX - 1));
        fd_slots_done(&s);

        /* Recovery claims scattered slots; new ones fill the holes lowest first, then run out. */
        fd_slots_init(&s);
        ASSERT_OK(fd_slots_claim(&s, 0));
        ASSERT_OK(fd_slots_claim(&s, 2));
        ASSERT_OK(fd_slots_claim(&s, 5000));
        ASSERT_OK(fd_slots_take(&s, &v));
        ASSERT_UEQ(v, 1);
        ASSERT_OK(fd_slots_take(&s, &v));
        ASSERT_UEQ(v, 3);
        for (uint32_t i = 0; i < FD_SLOTS_MAX - 5; i++)
                ASSERT_OK(fd_slots_take(&s, &v));
        ASSERT_ERROR(fd_slots_take(&s, &v), ENOSPC);
        fd_slots_release(&s, 5000);
        ASSERT_OK(fd_slots_take(&s, &v));
        ASSERT_UEQ(v, 5000);
        fd_slots_done(&s);
}

int main(void) {
        test_names();
        test_take_release();
        return 0;
}
