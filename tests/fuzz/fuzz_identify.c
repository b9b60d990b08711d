// SPDX-License-Identifier: MIT
/*
 * Fuzzes how ivsockd identifies a client from its command line
 * (hostd/identify.c: ident_parse_cmdline over /proc/PID/cmdline bytes, which
 * the client process controls), the UUID parser and the name sanitizer.
 */
#include <ctype.h>

#include "../../hostd/identify.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client_ident id;
	char *buf, uu[37];
	uint8_t u[16];
	size_t i;

	/* Exact-size copy: the parser must stay within len. */
	buf = malloc(size ? size : 1);
	FUZZ_ASSERT(buf);
	memcpy(buf, data, size);
	memset(&id, 0, sizeof(id));
	ident_parse_cmdline(&id, buf, size);
	FUZZ_ASSERT(memchr(id.name, '\0', sizeof(id.name)));
	ident_sanitize(id.name);
	for (i = 0; id.name[i]; i++)
		FUZZ_ASSERT(isalnum((unsigned char)id.name[i]) || strchr("._:@+-", id.name[i]));
	if (id.has_uuid) {
		ident_format_uuid(id.uuid, uu);
		FUZZ_ASSERT(ident_parse_uuid(uu, u) == 0 && !memcmp(u, id.uuid, 16));
	}
	free(buf);

	buf = malloc(size + 1);
	FUZZ_ASSERT(buf);
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (ident_parse_uuid(buf, u) == 0) {
		uint8_t u2[16];

		ident_format_uuid(u, uu);
		FUZZ_ASSERT(ident_parse_uuid(uu, u2) == 0 && !memcmp(u, u2, 16));
	}
	free(buf);
	return 0;
}
