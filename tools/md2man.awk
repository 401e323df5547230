# md2man.awk: docs/cli.md (CommonMark as the docs write it) -> certsync(1) in man(7) roff.
#   awk -v version=0.1.0 -v date=2026-12-05 -f tools/md2man.awk docs/cli.md > certsync.1
# Handles what cli.md uses: headings, fenced code, pipe tables (rows become tagged paragraphs),
# bullet and numbered lists, block quotes, rules, `code`, **bold**, *italic* and [links](target).
function esc(s) {
	gsub(/\\/, "\\e", s)
	gsub(/\\e\[u/, "\\[u", s) # utf8()'s escapes stay escapes
	gsub(/-/, "\\-", s)
	return s
}
function lead(s) { # a line starting with . or ' is a request to roff: make it text
	if (s ~ /^[.']/)
		s = "\\&" s
	return s
}
# Inline markup on an escaped line: code spans are set aside (their content is literal), emphasis and
# links are done on the whole line (they may span a code span), then the code spans come back in bold.
function inline(s,   out, n, i, k, code) {
	out = ""
	n = 0
	while (match(s, /`[^`]+`/)) {
		code[++n] = substr(s, RSTART + 1, RLENGTH - 2)
		out = out substr(s, 1, RSTART - 1) "\002" n "\003"
		s = substr(s, RSTART + RLENGTH)
	}
	s = emph(out s)
	for (i = 1; i <= n; i++) { # by index(): sub() would read & and \\ in the code as its own
		k = index(s, "\002" i "\003")
		s = substr(s, 1, k - 1) "\\fB" code[i] "\\fP" substr(s, k + length(i) + 2)
	}
	return s
}
# Replaces each match of re in s by op, the match less l leading and r trailing characters, cl.
function wrap(s, re, l, r, op, cl,   out) {
	out = ""
	while (match(s, re)) {
		out = out substr(s, 1, RSTART - 1) op substr(s, RSTART + l, RLENGTH - l - r) cl
		s = substr(s, RSTART + RLENGTH)
	}
	return out s
}
function links(s,   out, m, t) { # [text](target) -> text
	out = ""
	while (match(s, /\[[^]]+\]\([^)]+\)/)) {
		m = substr(s, RSTART, RLENGTH)
		t = substr(m, 2, index(m, "](") - 2)
		out = out substr(s, 1, RSTART - 1) t
		s = substr(s, RSTART + RLENGTH)
	}
	return out s
}
# Bold may run over a line break (**Account\nactions**): an unpaired ** opens it, the next line's first closes it.
function emph(s,   k) {
	s = links(s)
	if (BOLD && (k = index(s, "**"))) {
		s = substr(s, 1, k - 1) "\\fP" substr(s, k + 2)
		BOLD = 0
	}
	s = wrap(s, "[*][*][^*]+[*][*]", 2, 2, "\\fB", "\\fP")
	s = wrap(s, "[*][^* ][^*]*[*]", 1, 1, "\\fI", "\\fP")
	if (!BOLD && (k = index(s, "**"))) {
		s = substr(s, 1, k - 1) "\\fB" substr(s, k + 2)
		BOLD = 1
	}
	return s
}
function text(s) { return lead(inline(esc(s))) }
# UTF-8 to groff's \[uXXXX] escapes, so the page renders in any locale (run with LC_ALL=C: bytes, not characters).
function utf8(s,   out, i, n, b, cp, k) {
	if (s !~ /[\200-\377]/)
		return s
	out = ""
	n = length(s)
	for (i = 1; i <= n; i++) {
		b = ORD[substr(s, i, 1)]
		if (b < 128) { out = out substr(s, i, 1); continue }
		k = b >= 240 ? 3 : b >= 224 ? 2 : b >= 192 ? 1 : 0
		cp = k == 3 ? b - 240 : k == 2 ? b - 224 : k == 1 ? b - 192 : 65533
		for (; k > 0 && i < n; k--)
			cp = cp * 64 + ORD[substr(s, ++i, 1)] - 128
		out = out sprintf("\\[u%04X]", cp)
	}
	return out
}
function cells(row, a,   n, i) {
	sub(/^[ \t]*\|/, "", row)
	sub(/\|[ \t]*$/, "", row)
	gsub(/\\\|/, "\001", row) # an escaped pipe is part of its cell
	n = split(row, a, /\|/)
	for (i = 1; i <= n; i++) {
		gsub(/\001/, "|", a[i])
		gsub(/^[ \t]+|[ \t]+$/, "", a[i])
	}
	return n
}
BEGIN {
	incode = 0; intable = 0; title = 0
	for (i = 0; i < 256; i++)
		ORD[sprintf("%c", i)] = i
}
{ $0 = utf8($0) }
# A block quote is its content (a fence inside one included).
/^> ?/ { sub(/^> ?/, ""); if ($0 ~ /^[ \t]*$/) { print ".PP"; next } }
# Fenced code: verbatim, indented.
/^[ \t]*```/ {
	if (!incode) { print ".PP\n.RS 4\n.nf"; incode = 1 } else { print ".fi\n.RE"; incode = 0 }
	next
}
incode { print lead(esc($0)); next }
# The first heading names the page.
/^# / && !title {
	title = 1
	printf ".TH CERTSYNC 1 \"%s\" \"certsync %s\" \"certsync manual\"\n", date, version
	print ".SH NAME\ncertsync \\- GitOps reconciler for TLS certificates"
	print ".SH DESCRIPTION"
	print "This page is generated from docs/cli.md, the command-line reference."
	next
}
/^## / { sub(/^## +/, ""); gsub(/`/, ""); print ".SH " toupper(esc($0)); intable = 0; next }
/^###+ / { sub(/^###+ +/, ""); print ".SS " text($0); intable = 0; next }
/^---+[ \t]*$/ { next }
# Pipe tables: the header row and the rule go; each row is a tagged paragraph (first cell the tag).
/^[ \t]*\|/ {
	n = cells($0, c)
	if (!intable) { intable = 1; next }      # header row
	if ($0 ~ /^[ \t|:-]+$/) next              # |---|---|
	print ".TP\n" text(c[1])
	rest = ""
	for (i = 2; i <= n; i++) rest = rest (i > 2 ? " \\(em " : "") c[i]
	print text(rest)
	next
}
{ intable = 0 }
/^[ \t]*$/ { if (BOLD) { print "\\fP"; BOLD = 0 } print ".PP"; next }
/^[ \t]*[-*] / { sub(/^[ \t]*[-*] +/, ""); print ".IP \\(bu 2\n" text($0); next }
/^[0-9]+\. / { num = $0; sub(/\..*/, "", num); sub(/^[0-9]+\. +/, ""); print ".IP " num ". 4\n" text($0); next }
{ sub(/^[ \t]+/, ""); print text($0) }
END {
	print ".SH SEE ALSO"
	print "The full documentation (configuration, manifests, state, running as a service, metrics) is in"
	print "the docs/ directory of the source, installed under the documentation directory (share/doc/certsync)."
}
