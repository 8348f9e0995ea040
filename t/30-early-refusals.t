#!/usr/bin/perl

# Requests nginx ends before the module's phases, to a server with "welby
# on" at server level as README.md recommends (the configuration of the
# remote crash: "welby on; welby_token off; welby_tls off;
# location / { return 200; }"): a bad request line, HTTP/0.9, an
# unsupported version, an invalid URI, a bad, missing or repeated Host,
# a URI or a header line too long, an invalid header line, a client that
# leaves or times out while sending its headers, a bad request after a
# good one on a keep-alive connection, the same over TLS, plain HTTP to
# the HTTPS port, TLS garbage, and an HTTP/2 stream with an invalid header.
#
# For each: the worker survives (the same worker pid answers before and
# after, and the error log never says "exited on signal"), the answer is
# nginx's, with X-Request-Id (and HSTS over TLS), and the request has
# exactly one audit record, whose id is the one answered.  What reaches
# no request at all (TLS garbage) has no record.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::IP;
use IO::Socket::SSL;
use JSON::XS ();
use Time::HiRes qw(time);
use Welby::Nginx qw(http parse_response);

my $t = Welby::Nginx->new();
my $d = $t->testdir();

system('openssl', 'req', '-x509', '-newkey', 'ec',
    '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
    '-keyout', "$d/server.key", '-out', "$d/server.crt") == 0
    or die "openssl req failed";

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_audit_log %%TESTDIR%%/audit.log;

    client_header_buffer_size 1k;
    large_client_header_buffers 2 1k;

    # the issue's server
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name gw;
        client_header_timeout 1s;

        welby on;
        welby_token off;
        welby_tls off;

        location / {
            return 200 "ok\n";
        }
    }

    # the same over TLS, welby_tls required (the default)
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name gw;
        ssl_certificate %%TESTDIR%%/server.crt;
        ssl_certificate_key %%TESTDIR%%/server.key;

        welby on;
        welby_token off;

        location / {
            return 200 "ok\n";
        }
    }

    # HTTP/2 without TLS (prior knowledge), for raw frames
    server {
        listen 127.0.0.1:%%PORT_8082%% http2;
        server_name gw;

        welby on;
        welby_token off;
        welby_tls off;

        location / {
            return 200 "ok\n";
        }
    }

    # no welby: which worker answers, and the barrier records
    server {
        listen 127.0.0.1:%%PORT_8089%%;

        location / {
            return 200 "$pid";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8088%%;
        welby on;
        welby_token off;
        welby_tls off;

        location /barrier/ {
            return 204;
        }
    }
}
EOF

$t->run()->plan(81);

my $HEX32 = qr/^[0-9a-f]{32}\z/;
my $HSTS = 'max-age=31536000; includeSubDomains';
my $barrier = 0;

sub worker_pid {
    my $raw = http("GET / HTTP/1.0\r\n\r\n", port => $t->port(8089)) // '';
    return $raw =~ /\r\n\r\n(\d+)\z/ ? $1 : 'none';
}

sub records {
    my @r;
    for my $line (split /\n/, $t->read_file('audit.log')) {
        push @r, eval { JSON::XS->new->decode($line) } // { bad => $line };
    }
    return @r;
}

# records other than the barriers'
sub shape_records {
    return grep { ($_->{http}{path} // '') !~ m{^/barrier/} } records();
}

# The records the last shape left: waits for at least $want more than
# $before, then for a barrier request's record, written after them all.
sub new_records {
    my ($before, $want) = @_;
    my @r;
    $t->wait_for(sub { (@r = shape_records()) >= $before + $want })
        if $want;
    my $mark = '/barrier/' . ++$barrier;
    http("GET $mark HTTP/1.0\r\n\r\n", port => $t->port(8088));
    $t->wait_for(sub {
        grep { ($_->{http}{path} // '') eq $mark } records();
    });
    @r = shape_records();
    return @r[$before .. $#r];
}

# a raw connection that sends $bytes, then reads until the server closes
# or $timeout seconds pass; with keep => 1 it sends nothing more and just
# waits, for the server to time it out
sub raw {
    my ($port, $bytes, %o) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => 5) or return undef;
    binmode $s;
    syswrite($s, $bytes) if length $bytes;
    if ($o{close}) {
        close $s;
        return '';
    }
    my ($out, $sel, $deadline) = ('', IO::Select->new($s), time() + 10);
    while (time() < $deadline && $sel->can_read($deadline - time())) {
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $out .= $buf;
    }
    close $s;
    return $out;
}

# One shape: what it sends and how it answers; the worker, the answer's
# id and its one record.  4 or 5 assertions.
sub shape {
    my (%o) = @_;
    my $what = $o{what};
    my $pid = worker_pid();
    my $before = () = shape_records();

    my $raw = $o{send}->();
    my $r = parse_response($raw);

    if (defined $o{status}) {
        is($r && $r->status, $o{status}, "$what: answered $o{status}")
            or diag($raw // 'no response');
    } elsif (defined $o{body}) {
        is($raw, $o{body}, "$what: answered with the body alone");
    }

    my @rec = new_records($before, $o{records} // 1);
    is(scalar @rec, $o{records} // 1,
        "$what: exactly " . ($o{records} // 1) . ' audit record(s)')
        or diag(explain \@rec);

    if ($o{id}) {
        my @ids = $r ? $r->header('X-Request-Id') : ();
        ok(@ids == 1 && $ids[0] =~ $HEX32 && ($rec[-1]{id} // '') eq $ids[0],
            "$what: one X-Request-Id, the record's id")
            or diag(explain [\@ids, $rec[-1]]);
    }

    if (defined $o{record_status}) {
        is($rec[-1] && $rec[-1]{http}{status}, $o{record_status},
            "$what: the record's status is $o{record_status}");
    }

    if (defined $o{hsts}) {
        is(join('|', $r ? $r->header('Strict-Transport-Security') : ()),
            $o{hsts}, "$what: " . ($o{hsts} ? 'HSTS' : 'no HSTS'));
    }

    is(worker_pid(), $pid, "$what: the same worker answers afterwards");

    return ($r, @rec);
}

my $P = $t->port(8080);
my $long = 'a' x 1100;

###############################################################################
# before the headers: nginx never made the request's header list

shape(what => 'bad request line', status => 400, id => 1,
    record_status => 400,
    send => sub { raw($P, "BAD\r\n\r\n") });

shape(what => 'HTTP/0.9', body => "ok\n", record_status => 200,
    send => sub { raw($P, "GET /\r\n") });

shape(what => 'unsupported HTTP version', status => 505, id => 1,
    send => sub { raw($P, "GET / HTTP/2.5\r\n\r\n") });

shape(what => 'invalid URI (above the root)', status => 400, id => 1,
    send => sub { raw($P, "GET /../x HTTP/1.1\r\nHost: gw\r\n\r\n") });

shape(what => 'invalid host in the request line', status => 400, id => 1,
    send => sub { raw($P, "GET http://a..b/ HTTP/1.1\r\n\r\n") });

shape(what => 'URI too long', status => 414, id => 1,
    send => sub { raw($P, "GET /$long HTTP/1.1\r\nHost: gw\r\n\r\n") });

shape(what => 'request line cut off, the client gone', record_status => 400,
    send => sub { raw($P, "GET /fhir/Pat", close => 1) });

###############################################################################
# in the headers

shape(what => 'header line too long', status => 400, id => 1,
    record_status => 400,
    send => sub { raw($P, "GET / HTTP/1.1\r\nHost: gw\r\nX-A: $long\r\n\r\n") });

shape(what => 'invalid Host header', status => 400, id => 1,
    send => sub { raw($P, "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n") });

shape(what => 'no Host in HTTP/1.1', status => 400, id => 1,
    send => sub { raw($P, "GET / HTTP/1.1\r\n\r\n") });

shape(what => 'two Host headers', status => 400, id => 1,
    send => sub { raw($P, "GET / HTTP/1.1\r\nHost: gw\r\nHost: gw\r\n\r\n") });

shape(what => 'NUL in a header value', status => 400, id => 1,
    send => sub { raw($P, "GET / HTTP/1.1\r\nHost: gw\r\nX-A: a\0b\r\n\r\n") });

shape(what => 'headers not finished in client_header_timeout',
    record_status => 408,
    send => sub { raw($P, "GET / HTTP/1.1\r\nHost: gw\r\n") });

###############################################################################
# keep-alive: a good request, then a bad one on the same connection

{
    my $what = 'keep-alive, then a bad request';
    my $pid = worker_pid();
    my $before = () = shape_records();
    my $raw = raw($P, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\nBAD\r\n\r\n");
    my @st = $raw =~ m{^HTTP/1\.1 (\d{3})}mg;
    is("@st", '200 400', "$what: answered 200, then 400");
    my @rec = new_records($before, 2);
    is(join(' ', map { $_->{http}{status} // '-' } @rec), '200 400',
        "$what: one record each");
    my @ids = $raw =~ /^X-Request-Id: (\S+)\r$/mg;
    is("@ids", join(' ', map { $_->{id} // '-' } @rec),
        "$what: each answer carries its record's id");
    is(worker_pid(), $pid, "$what: the same worker answers afterwards");
}

###############################################################################
# TLS

my $S = $t->port(8443);

sub tls_raw {
    my ($bytes) = @_;
    my $s = IO::Socket::SSL->new(PeerHost => '127.0.0.1', PeerPort => $S,
        SSL_verify_mode => SSL_VERIFY_NONE, Timeout => 5) or return undef;
    print $s $bytes;
    local $/;
    my $out = <$s>;
    close $s;
    return $out;
}

shape(what => 'TLS: bad request line', status => 400, id => 1,
    hsts => $HSTS, send => sub { tls_raw("BAD\r\n\r\n") });

shape(what => 'TLS: too long header line', status => 400, id => 1,
    hsts => $HSTS,
    send => sub { tls_raw("GET / HTTP/1.1\r\nHost: gw\r\nX-A: $long\r\n\r\n") });

shape(what => 'plain HTTP to the HTTPS port', status => 400, id => 1,
    hsts => '', record_status => 400,
    send => sub { raw($S, "GET / HTTP/1.1\r\nHost: gw\r\n\r\n") });

shape(what => 'TLS garbage: no request', records => 0,
    send => sub { raw($S, "\x16\x03\x01\x00\x05garbage-not-tls\r\n\r\n") });

shape(what => 'TLS handshake, then nothing', records => 0,
    send => sub {
        my $s = IO::Socket::SSL->new(PeerHost => '127.0.0.1',
            PeerPort => $S, SSL_verify_mode => SSL_VERIFY_NONE);
        close $s if $s;
        return '';
    });

###############################################################################
# HTTP/2: a stream nginx resets for an invalid header, then a good one on
# the same connection

sub h2_frame {
    my ($type, $flags, $stream, $payload) = @_;
    return substr(pack('N', length $payload), 1) . pack('CCN', $type, $flags,
        $stream) . $payload;
}

# HPACK literal fields without indexing, new names (RFC 7541 6.2.2)
sub h2_headers {
    my (@kv) = @_;
    my $b = '';
    while (my ($k, $v) = splice(@kv, 0, 2)) {
        $b .= "\x00" . chr(length $k) . $k . chr(length $v) . $v;
    }
    return $b;
}

# frames received until $done->(type, flags, stream) is true, or 10 s
sub h2_read {
    my ($s, $done) = @_;
    my ($buf, $sel, $deadline, @got) = ('', IO::Select->new($s), time() + 10);
    while (time() < $deadline) {
        while (length $buf >= 9) {
            my ($len) = unpack('N', "\0" . substr($buf, 0, 3));
            last if length $buf < 9 + $len;
            my ($type, $flags, $stream) = unpack('CCN', substr($buf, 3, 6));
            $stream &= 0x7fffffff;
            substr($buf, 0, 9 + $len) = '';
            push @got, "$type/$stream";
            return @got if $done->($type, $flags, $stream);
        }
        last unless $sel->can_read($deadline - time());
        my $n = sysread($s, my $more, 65536);
        last unless $n;
        $buf .= $more;
    }
    return @got;
}

{
    my $what = 'HTTP/2: a header name in upper case';
    my $pid = worker_pid();
    my $before = () = shape_records();

    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
        PeerPort => $t->port(8082), Proto => 'tcp') or die "h2: $!";
    binmode $s;
    my @req = (':method' => 'GET', ':scheme' => 'http',
        ':authority' => 'gw');
    syswrite($s, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . h2_frame(4, 0, 0, '')
        . h2_frame(1, 0x5, 1, h2_headers(@req, ':path' => '/fhir/x?q=1',
            'Bad-Name' => 'x')));
    my @got = h2_read($s, sub { $_[0] == 3 && $_[2] == 1 });
    ok(grep({ $_ eq '3/1' } @got), "$what: the stream is reset")
        or diag("@got");

    syswrite($s, h2_frame(1, 0x5, 3, h2_headers(@req, ':path' => '/ok')));
    @got = h2_read($s, sub { $_[0] == 1 && $_[2] == 3 });
    ok(grep({ $_ eq '1/3' } @got),
        "$what: the next stream on the connection is answered")
        or diag("@got");
    close $s;

    my @rec = new_records($before, 2);
    is(join(' ', map { $_->{http}{path} // '-' } @rec), '/fhir/x /ok',
        "$what: one record for the reset stream and one for the next");
    is(worker_pid(), $pid, "$what: the same worker answers afterwards");
}

###############################################################################

unlike($t->read_file('error.log'), qr/exited on signal/,
    'no worker exited on a signal');
