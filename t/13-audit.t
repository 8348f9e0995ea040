#!/usr/bin/perl

# The audit trail (welby_audit_log): exactly one JSON Lines record per
# request of a "welby on" location, whatever happened to it, with ids and
# codes but never a token, a body or a query value; owner-only files,
# reopened on USR1, buffered and flushed, and a hash chain that
# conf/audit-verify checks.
#
# The log phase runs after the response is sent, and for a request with a
# body only once the client has closed (nginx's lingering close), so each
# check first waits for the record it looks at (by_id, wait_for).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::INET;
use JSON::XS ();
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);
$t->write_file('query.key', 'q' x 40);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;
    welby_audit_log %%TESTDIR%%/audit.log;
    welby_audit_log %%TESTDIR%%/buffered.log buffer=64k flush=1s;
    welby_audit_log %%TESTDIR%%/held.log buffer=64k;
    welby_audit_log %%TESTDIR%%/gone.log;
    welby_audit_node gw-test;
    welby_audit_query_key %%TESTDIR%%/query.key;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        location / {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /down/ {
            welby on;
            proxy_pass http://127.0.0.1:%%PORT_8082%%;
        }

        location /redirected/ {
            welby on;
            error_page 404 = /fallback/;
            return 404;
        }

        location /fallback/ {
            welby on;
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /open/ {
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /silent/ {
            welby on;
            welby_token off;
            proxy_pass http://127.0.0.1:%%PORT_8083%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

# a backend that accepts and never answers, for the client abort
my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
    LocalPort => $t->port(8083), ReuseAddr => 1) or die "silent: $!";

$t->run()->plan(40);

my $tok = jwt(key => $key, set => { iss => 'https://issuer.test',
    aud => 'https://fhir.test', sub => 'nurse-7', jti => 'jti-audit-1' });

sub req {
    my (%o) = @_;
    return parse_response(http_req(%o));
}

sub records {
    my ($file) = @_;
    my @r;
    for my $line (split /\n/, $t->read_file($file // 'audit.log')) {
        push @r, eval { JSON::XS->new->decode($line) } // { bad => $line };
    }
    return @r;
}

# the records of a request id in audit.log, once there is one (up to 10 s)
sub by_id {
    my ($id) = @_;
    my @a;
    $t->wait_for(sub {
        @a = grep { ($_->{id} // '') eq ($id // '-') } records();
        return scalar @a;
    });
    return @a;
}

# the records of a request whose response the client never read: by the
# X-Request-Id it sent, which the record keeps apart from its own id
sub by_client_id {
    my ($id) = @_;
    my @a;
    $t->wait_for(sub {
        @a = grep { ($_->{client_request_id} // '') eq $id } records();
        return scalar @a;
    });
    return @a;
}

sub ids { return join ' ', map { $_->{id} // '-' } @_ }

sub verify {
    my $out = `$FindBin::Bin/../conf/audit-verify @_ 2>&1`;
    return ($? >> 8, $out);
}

# an allowed request, with a query that holds health data

my $r = req(uri => '/Observation?code=diabetes&subject=p1&code=x',
    headers => ["Authorization: Bearer $tok"]);
my @a = by_id($r->header('X-Request-Id'));
is(scalar @a, 1, 'allowed: exactly one record');
my $a = $a[0] || {};
is("$a->{outcome}/$a->{category}/$a->{http}{status}", 'allow/operation/200',
    'allowed: outcome allow, category operation, status 200');
is_deeply($a->{http}{query}{names}, ['code', 'subject'],
    'allowed: the query is kept as its parameter names, once each');
like($a->{http}{query}{hmac} // '', qr/^[0-9a-f]{64}$/,
    'allowed: and a keyed hash of the whole query');
is("$a->{agent}{sub} $a->{agent}{jti}", 'nurse-7 jti-audit-1',
    'allowed: the agent is the token\'s sub, and its jti');
is("$a->{node} $a->{schema}", 'gw-test 1', 'allowed: node and schema');
is($a->{upstream}{status}, 200, 'allowed: the upstream status');
like($a->{time} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
    'allowed: a UTC time with milliseconds');

# refusals of each step

$r = req(uri => '/Patient/p1');
($a) = by_id($r->header('X-Request-Id'));
is(join('/', map { $_ // '' } @{$a}{qw(outcome category reason)}),
    'deny/authentication/token_missing',
    'no token: outcome deny, category authentication, reason token_missing');

$r = req(uri => '/Patient/p1', method => 'PROPFIND');
($a) = by_id($r->header('X-Request-Id'));
is(join('/', map { $_ // '' } @{$a}{qw(outcome category reason)}),
    'deny/event/method_not_allowed', 'PROPFIND: deny, event, its reason');

$r = req(uri => '/Patient/..%2Fp1', headers => ["Authorization: Bearer $tok"]);
($a) = by_id($r->header('X-Request-Id'));
is($a && $a->{reason}, 'request_malformed', 'encoded slash: request_malformed');

# an upstream that is down

$r = req(uri => '/down/x', headers => ["Authorization: Bearer $tok"]);
@a = by_id($r->header('X-Request-Id'));
is(scalar @a, 1, 'upstream down: one record');
is(($a[0] || {})->{outcome} . '/' . (($a[0] || {})->{http}{status} // ''),
    'error/502', 'upstream down: outcome error, status 502');

# an internal redirect: still one record, for the request

my $before = () = records();
$r = req(uri => '/redirected/x', headers => ["Authorization: Bearer $tok"]);
is($r->status, 200, 'error_page redirect served by the fallback location');
by_id($r->header('X-Request-Id'));
is(scalar(records()) - $before, 1, 'internal redirect: exactly one record');

# a client that gives up while the backend thinks: one record, 499

my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port(8080))
    or die "connect: $!";
print $c "GET /silent/x HTTP/1.1\r\nHost: localhost\r\n"
    . "X-Request-Id: abort-1\r\n\r\n";
# the backend thinks once nginx has connected to it
my $thinking = IO::Select->new($silent)->can_read(10) ? $silent->accept
    : undef;
close $c;
my @abort = by_client_id('abort-1');
close $thinking if $thinking;
is(scalar @abort, 1, 'client abort: one record');
is(($abort[0] || {})->{http}{status}, 499,
    'client abort: status 499, as nginx logs it');

# a location without welby: no record

# nginx serves one connection after the other: once the record of the
# welby request sent next is there, one for /open/x would be too
$before = () = records();
req(uri => '/open/x');
$r = req(uri => '/Patient/p1', headers => ["Authorization: Bearer $tok"]);
by_id($r->header('X-Request-Id'));
my @since = records();
is(ids(@since[$before .. $#since]), $r->header('X-Request-Id'),
    'a location without welby: no record (only the next request has one)');

# nothing of the request's secrets or health data

my $secret_tok = jwt(key => $key, set => { iss => 'https://issuer.test',
    aud => 'https://fhir.test', sub => 'u9', jti => 'jti-2' });
$r = req(uri => '/Patient?name=Yamada-Hanako&birthdate=1980-02-03',
    method => 'POST', body => '{"resourceType":"Patient","secret":"BODY-PHI"}',
    headers => ["Authorization: Bearer $secret_tok",
        'Content-Type: application/fhir+json', 'Cookie: sid=COOKIE-VALUE']);
# (a request with a body: its record comes after the client has closed)
is(scalar(by_id($r->header('X-Request-Id'))), 1,
    'the request with secrets has its record, which the checks below read');
# (the error log is read above the debug level: debug logs everything, and
# is for development only)
my @entries = split /\n(?=\d{4}\/\d\d\/\d\d )/, $t->read_file('error.log');
my $all = $t->read_file('audit.log') . join "\n",
    grep { !/^\S+ \S+ \[debug\]/ } @entries;
unlike($all, qr/\Q$secret_tok\E/, 'no token in the audit or error log');
unlike($all, qr/\Q$tok\E/, 'not the earlier one either');
unlike($all, qr/Yamada-Hanako|1980-02-03|diabetes/,
    'no query value in the audit or error log');
unlike($all, qr/BODY-PHI|COOKIE-VALUE/, 'no body, no cookie');

# the files

is(sprintf('%o', (stat "$d/audit.log")[2] & 07777), '600',
    'the audit log is owner-only (0600)');
is(scalar(grep { $_->{bad} } records()), 0, 'every line is valid JSON');

# every request's record is in audit.log now (the last one's was waited for)
my @all = records();
my $n = @all;
is(scalar(records('held.log')), 0,
    "buffer=64k without flush: none of the $n records written yet");
# the flush timer fires a second after the first record; a loaded
# machine may run it late
my @buffered;
$t->wait_for(sub {
    @buffered = records('buffered.log');
    return @buffered >= $n;
});
is(ids(@buffered), ids(@all), 'flush=1s: the timer writes them all, in order');

my ($rc, $out) = verify("$d/audit.log");
ok($rc == 0 && $out =~ /audit\.log: ok, $n records, 1 stream$/m,
    "audit-verify: the chain of the file is intact, $n records")
    or diag $out;

# reopen, as logrotate does it; held.log is not renamed, so its worker
# reopens the same file

rename "$d/audit.log", "$d/audit.log.1" or die "rename: $!";
$t->reopen() or diag('no "reopening logs" from the master and the worker');
$r = req(uri => '/Patient/p1', headers => ["Authorization: Bearer $tok"]);
is(ids(by_id($r->header('X-Request-Id'))), $r->header('X-Request-Id'),
    'after USR1 the record goes to the new file');
is(sprintf('%o', (stat "$d/audit.log")[2] & 07777), '600',
    'the new file is owner-only too');
is(ids(records('held.log')), ids(@all),
    'the reopen wrote what the buffer without flush held, and no more');
($rc, $out) = verify("$d/audit.log", "$d/audit.log.1");
ok($rc == 0 && $out =~ /audit\.log: ok, 1 record, 1 stream$/m
    && $out =~ /audit\.log\.1: ok, $n records, 1 stream$/m,
    'audit-verify: old and new files both intact') or diag $out;

# the verifier finds a removed line and an edited one

my @lines = split /^/, $t->read_file('audit.log.1');
$t->write_file('removed.log', join '', @lines[0 .. 2], @lines[4 .. $#lines]);
($rc, $out) = verify("$d/removed.log");
is($rc, 1, 'audit-verify: a removed line breaks the chain');
my $edited = $lines[2];
$edited =~ s/"seq":(\d+)/'"seq":' . ($1 + 100)/e;
$t->write_file('edited.log', join '', @lines[0 .. 1], $edited,
    @lines[3 .. $#lines]);
($rc, $out) = verify("$d/edited.log");
is($rc, 1, 'audit-verify: an edited line breaks the chain');

# a file with no record has nothing to check: not "intact"

$t->write_file('empty.log', '');
($rc, $out) = verify("$d/empty.log", "$d/audit.log");
ok($rc == 2 && $out =~ /empty\.log: no records/,
    'audit-verify: a file with no record fails (exit 2, "no records")')
    or diag "exit $rc: $out";
($rc, $out) = verify('--allow-empty', "$d/empty.log", "$d/audit.log");
is($rc, 0, 'audit-verify --allow-empty: accepts it') or diag $out;

# a file deleted, then two reopens without a record: the second new file
# may get the deleted file's inode number (the first was created while
# the deleted one was still open), and still starts its own chain

my $gone_ino = (stat "$d/gone.log")[1];
unlink "$d/gone.log" or die "unlink: $!";
$t->reopen() or diag('reopen: no "reopening logs" from every process');
req(uri => '/open/x');     # the worker is done reopening (no record)
rename "$d/gone.log", "$d/gone.log.1" or die "rename: $!";
$t->reopen() or diag('reopen: no "reopening logs" from every process');
$r = req(uri => '/Patient/p1', headers => ["Authorization: Bearer $tok"]);
by_id($r->header('X-Request-Id'));
SKIP: {
    skip 'the file system gave the new file another inode number', 1
        unless (stat "$d/gone.log")[1] == $gone_ino;
    ($rc, $out) = verify("$d/gone.log");
    ok($rc == 0 && $out =~ /gone\.log: ok, 1 record, 1 stream \(1 continues a file not given\)$/m,
        'a new file with a deleted file\'s inode number: a new chain')
        or diag $out;
}

# five reopens without a record in between: the files may get back the
# descriptor numbers the worker last wrote to, and still start new chains

for my $k (2 .. 6) {
    for my $f ('audit.log', 'buffered.log') {
        rename "$d/$f", "$d/$f.$k" or die "rename $f: $!";
    }
    $t->reopen() or diag("reopen $k: no \"reopening logs\" from every "
        . 'process');
}
my @two = map { req(uri => '/Patient/p1', headers =>
    ["Authorization: Bearer $tok"])->header('X-Request-Id') } 1 .. 2;
by_id($two[1]);
$t->wait_for(sub { records('buffered.log') >= 2 });
($rc, $out) = verify("$d/audit.log", "$d/buffered.log");
ok($rc == 0
    && $out =~ /audit\.log: ok, 2 records, 1 stream \(1 continues a file not given\)$/m
    && $out =~ /buffered\.log: ok, 2 records, 1 stream \(1 continues a file not given\)$/m,
    'after five quiet reopens the new files start their own chains')
    or diag $out;

# a stop writes what the buffer holds

$r = req(uri => '/Patient/p1', headers => ["Authorization: Bearer $tok"]);
$t->stop();
is(scalar(grep { ($_->{id} // '') eq $r->header('X-Request-Id') }
    records('buffered.log')), 1,
    'nginx stopped at once: the buffered record is in the file');

# held.log was reopened six times and never renamed: one chain throughout

my $total = 0;
$total += records($_) for grep { m{/audit\.log[.\d]*$} } glob("$d/audit.log*");
($rc, $out) = verify("$d/held.log");
ok($rc == 0 && $out =~ /held\.log: ok, $total records, 1 stream$/m,
    "reopens of the same file go on with its chain ($total records)")
    or diag $out;
