#!/usr/bin/perl

# Client headers that must not reach a backend, whatever their spelling
# and whatever the backend: X-Welby-* and welby_strip_header names are
# removed as FastCGI, uwsgi and SCGI see them ('_' and '-' the same, any
# case), also with underscores_in_headers on and ignore_invalid_headers
# off, over HTTP/1.1 and HTTP/2; a stripped known header (X-Forwarded-For,
# Cookie, Referer) is gone from nginx's variables too, so
# $proxy_add_x_forwarded_for cannot carry a client's address; the lists of
# http, server and location add up; nginx -t refuses Host and the framing
# headers and warns about the two header settings.  Every removal is
# shown against a control that reaches the backend.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Welby::Nginx qw(http_req parse_response);
use Welby::JWT qw(gen_key jwt write_jwks);
use Welby::CGIBackend;
use JSON::PP ();

my $t = Welby::Nginx->new();
my $d = $t->testdir();

my $key = gen_key('ES256', kid => 'k1');
write_jwks("$d/keys.jwks", $key);

$t->write_file_expand('nginx.conf', <<'EOF');
%%TEST_GLOBALS%%

events {}

http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;    # over plain HTTP here; TLS: t/18-tls.t

    welby_issuer https://issuer.test keys=%%TESTDIR%%/keys.jwks
                 audience=https://fhir.test;

    welby_strip_header X-Remote-User X-Forwarded-User;

    # A: underscores_in_headers on, a list at each level
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8086%% http2;
        server_name a;
        underscores_in_headers on;
        welby on;
        welby_trusted_proxy 127.0.0.2 request_id=on;
        welby_strip_header X-Forwarded-For Cookie Referer;
        add_header X-Seen "[$http_x_forwarded_for][$http_cookie][$cookie_a][$http_referer][$http_x_debug]" always;

        location /fcgi/ {
            fastcgi_pass 127.0.0.1:%%PORT_8082%%;
        }

        location /scgi/ {
            scgi_pass 127.0.0.1:%%PORT_8083%%;
        }

        location /uwsgi/ {
            uwsgi_pass 127.0.0.1:%%PORT_8084%%;
        }

        location /public/ {
            welby_token off;
            fastcgi_pass 127.0.0.1:%%PORT_8082%%;
        }

        location /proxy/ {
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /debug/ {
            welby_strip_header X-Debug x_forwarded_for;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }

        location /hdr/ {
            welby_token header=X-Token;
            add_header X-Reason $welby_reason always;
            fastcgi_pass 127.0.0.1:%%PORT_8082%%;
        }
    }

    # B: ignore_invalid_headers off, only the http list
    server {
        listen 127.0.0.1:%%PORT_8085%%;
        server_name b;
        ignore_invalid_headers off;
        welby on;
        add_header X-Seen "[$http_x_forwarded_for][$http_cookie][$cookie_a][$http_referer][$http_x_debug]" always;

        location /fcgi/ {
            fastcgi_pass 127.0.0.1:%%PORT_8082%%;
        }

        location /proxy/ {
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_pass http://127.0.0.1:%%PORT_8081%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { js_content echo.echo; }
    }
}
EOF

Welby::CGIBackend->start(proto => 'fastcgi', port => $t->port(8082));
Welby::CGIBackend->start(proto => 'scgi', port => $t->port(8083));
Welby::CGIBackend->start(proto => 'uwsgi', port => $t->port(8084));

$t->run();

my $tok = jwt(key => $key, set => { sub => 'p1' });
my $n = 0;

sub get {
    my ($uri, @h) = @_;
    my %o = (uri => $uri, headers => [@h, 'X-Request-Id: strip-' . ++$n]);
    $o{port} = $1, $o{uri} = $2 if $uri =~ m{^:(\d+)(/.*)$};
    return parse_response(http_req(%o));
}

# the backend's HTTP_* parameters as a name => [values] map
sub params {
    my ($r) = @_;
    my %p;
    return \%p unless $r && $r->status == 200;
    my $j = JSON::PP->new->decode($r->body);
    push @{ $p{ $_->[0] } }, $_->[1] for @{ $j->{params} };
    return \%p;
}

sub vals {
    my ($p, $name) = @_;
    return join('|', @{ $p->{$name} || [] });
}

my @forged = (
    'X_Welby_Sub: p2',
    'X_Welby_Amr: pwd otp hwk',
    'X_Welby_Fhir_User: Practitioner/dr-evil',
    'x-welby_client_id: evil-client',
    'X_WELBY_ISS: https://evil.test',
    'X-Welby-Sub: p3',
);

###############################################################################
# identity headers through FastCGI, SCGI and uwsgi (item: underscores)

for my $b (qw(fcgi scgi uwsgi)) {
    my $r = get("/$b/Patient/p1", "Authorization: Bearer $tok", @forged,
        'X_Other: kept', 'X_Remote_User: admin', 'x-forwarded_user: admin');
    my $p = params($r);

    is($r && $r->status, 200, "$b: the request with forged headers is "
        . "answered by the backend");
    is(vals($p, 'HTTP_X_OTHER'), 'kept', "$b: control: an unprotected "
        . "header with '_' reaches the backend as HTTP_X_OTHER");
    is(vals($p, 'HTTP_X_WELBY_SUB'), 'p1', "$b: HTTP_X_WELBY_SUB is once, "
        . "the token's p1, not X_Welby_Sub's p2 or X-Welby-Sub's p3");
    is(vals($p, 'HTTP_X_WELBY_ISS'), 'https://issuer.test',
        "$b: HTTP_X_WELBY_ISS is the token's, not X_WELBY_ISS's");
    is(vals($p, 'HTTP_X_WELBY_CLIENT_ID'), 'client-1',
        "$b: HTTP_X_WELBY_CLIENT_ID is the token's, not x-welby_client_id's");
    is(join(',', grep { exists $p->{$_} }
            qw(HTTP_X_WELBY_AMR HTTP_X_WELBY_FHIR_USER HTTP_X_REMOTE_USER
               HTTP_X_FORWARDED_USER)), '',
        "$b: no HTTP_X_WELBY_AMR or HTTP_X_WELBY_FHIR_USER (the token has "
        . "neither), no HTTP_X_REMOTE_USER or HTTP_X_FORWARDED_USER");
}

# X-Request-Id in the other spelling: the backend sees the gateway's id
# only, and neither spelling is taken as the client's

for my $c (['127.0.0.1', 'X_Request_Id: evil-id'],
    ['127.0.0.1', 'X_Request_Id: evil-id', 'X-Request-Id: also-evil'],
    ['127.0.0.2', 'X_Request_Id: evil-id', 'X-Request-Id: proxy-id'])
{
    my ($from, @h) = @$c;
    my $resp = http_req(uri => '/fcgi/Patient/p1', local => $from,
        headers => ["Authorization: Bearer $tok", @h]);
    my ($id) = $resp =~ /^X-Request-Id: ([^\r\n]+)/mi;
    my $pr = params(parse_response($resp));
    ok(defined $id && $id =~ /^[0-9a-f]{32}\z/
        && vals($pr, 'HTTP_X_REQUEST_ID') eq $id,
        "fcgi: from $from, @h: HTTP_X_REQUEST_ID is once, the gateway's id")
        or diag(vals($pr, 'HTTP_X_REQUEST_ID'));
}

# control: the trusted proxy's id alone is taken
my $resp = http_req(uri => '/fcgi/Patient/p1', local => '127.0.0.2',
    headers => ["Authorization: Bearer $tok", 'X-Request-Id: proxy-id']);
is(vals(params(parse_response($resp)), 'HTTP_X_REQUEST_ID'), 'proxy-id',
    "fcgi: control: the trusted proxy's X-Request-Id alone is the id");

my $r = get('/public/metadata', @forged);
my $p = params($r);
is($r && $r->status, 200, 'public (welby_token off): answered');
is(join(',', grep { /^HTTP_X_WELBY_/ } sort keys %$p), '',
    'public (welby_token off): no HTTP_X_WELBY_* at all reaches FastCGI');

# server B: underscores off, ignore_invalid_headers off: nginx keeps the
# names it finds invalid, as they are

$r = get(':' . $t->port(8085) . '/fcgi/Patient/p1',
    "Authorization: Bearer $tok", @forged, 'X_Other: kept',
    'X_Remote_User: admin');
$p = params($r);
is(vals($p, 'HTTP_X_OTHER'), 'kept', 'ignore_invalid_headers off: control: '
    . 'X_Other reaches FastCGI');
is(vals($p, 'HTTP_X_WELBY_SUB') . ' ' . vals($p, 'HTTP_X_WELBY_ISS'),
    'p1 https://issuer.test', 'ignore_invalid_headers off: HTTP_X_WELBY_SUB '
    . 'and HTTP_X_WELBY_ISS are the token\'s only');
is(join(',', grep { exists $p->{$_} }
        qw(HTTP_X_WELBY_AMR HTTP_X_WELBY_FHIR_USER HTTP_X_REMOTE_USER)), '',
    'ignore_invalid_headers off: no forged AMR, FHIR_USER, REMOTE_USER');

# HTTP/2: names arrive lowercased
my $port2 = $t->port(8086);
my $out = `curl -s --http2-prior-knowledge --max-time 10 -H 'Authorization: Bearer $tok' -H 'x_welby_sub: p2' -H 'x-welby_fhir_user: Practitioner/dr-evil' -H 'x_other: kept' 'http://127.0.0.1:$port2/fcgi/Patient/p1' 2>&1`;
my $j = eval { JSON::PP->new->decode($out) } || { params => [] };
my %h2;
push @{ $h2{ $_->[0] } }, $_->[1] for @{ $j->{params} };
is(vals(\%h2, 'HTTP_X_OTHER'), 'kept',
    'HTTP/2: control: x_other reaches FastCGI') or diag($out);
is(vals(\%h2, 'HTTP_X_WELBY_SUB') . (exists $h2{HTTP_X_WELBY_FHIR_USER}
        ? ' fhir_user' : ''), 'p1',
    'HTTP/2: HTTP_X_WELBY_SUB is the token\'s only, no forged FHIR_USER');

# a token header in the other spelling is a second token: FastCGI would
# get HTTP_X_TOKEN twice

my $tok2 = jwt(key => $key, set => { sub => 'p2' });
$r = get('/hdr/Patient/p1', "X-Token: $tok");
is($r && $r->status, 200, 'header=X-Token: control: X-Token alone is accepted');
$r = get('/hdr/Patient/p1', "X-Token: $tok", "X_Token: $tok2");
is(($r && $r->status) . ' ' . ($r && $r->header('X-Reason')),
    '400 token_ambiguous', 'header=X-Token: X-Token and X_Token are two '
    . 'tokens, token_ambiguous');

###############################################################################
# known headers leave nginx's variables too (X-Forwarded-For, Cookie,
# Referer), shown against server B, which strips none of them

my @client = ('X-Forwarded-For: 10.9.9.9', 'Cookie: a=1; b=2',
    'Referer: https://evil.test/', "Authorization: Bearer $tok");

$r = get(':' . $t->port(8085) . '/proxy/Patient/p1', @client);
$j = $r && $r->status == 200 ? $r->json : {};
is($j->{headers}{'x-forwarded-for'}, '10.9.9.9, 127.0.0.1',
    'control (not stripped): $proxy_add_x_forwarded_for carries the '
    . 'client\'s address');
is($r && $r->header('X-Seen'), '[10.9.9.9][a=1; b=2][1][https://evil.test/][]',
    'control (not stripped): the variables read the client\'s headers');

$r = get('/proxy/Patient/p1', @client);
$j = $r && $r->status == 200 ? $r->json : {};
is($j->{headers}{'x-forwarded-for'}, '127.0.0.1',
    'stripped X-Forwarded-For: the backend gets only the peer address');
is(join(',', grep { exists $j->{headers}{$_} } qw(cookie referer)), '',
    'stripped Cookie and Referer: the backend gets neither');
is($r && $r->header('X-Seen'), '[][][][][]',
    'stripped: $http_x_forwarded_for, $http_cookie, $cookie_a and '
    . '$http_referer are empty');

$r = get('/proxy/Patient/p1', @client, 'X-Forwarded-For: 10.8.8.8',
    'Cookie: a=3');
$j = $r && $r->status == 200 ? $r->json : {};
is($j->{headers}{'x-forwarded-for'} . ' ' . ($r && $r->header('X-Seen')),
    '127.0.0.1 [][][][][]',
    'stripped, each sent twice: nothing of either line is left');

###############################################################################
# the lists add up: http (X-Remote-User), server (X-Forwarded-For),
# location (X-Debug)

$r = get('/debug/Patient/p1', "Authorization: Bearer $tok",
    'X-Remote-User: admin', 'X-Forwarded-User: admin',
    'X-Forwarded-For: 10.9.9.9', 'X-Debug: 1', 'X_Forwarded_For: 10.7.7.7',
    'X-Keep: kept');
$j = $r && $r->status == 200 ? $r->json : {};
is($j->{headers}{'x-keep'}, 'kept', 'union: control: X-Keep reaches the '
    . 'backend');
is(join(',', grep { exists $j->{headers}{$_} }
        qw(x-remote-user x-forwarded-user x-forwarded-for x_forwarded_for
           x-debug)), '',
    'union: the location\'s X-Debug, the server\'s X-Forwarded-For (both '
    . 'spellings) and the http level\'s X-Remote-User and X-Forwarded-User '
    . 'are all removed');
is($r && $r->header('X-Seen'), '[][][][][]',
    'union: their variables are empty in the location');

$r = get(':' . $t->port(8085) . '/proxy/Patient/p1',
    "Authorization: Bearer $tok", 'X-Remote-User: admin', 'X-Debug: 1');
$j = $r && $r->status == 200 ? $r->json : {};
is(($j->{headers}{'x-debug'} // '') . ' '
    . (exists $j->{headers}{'x-remote-user'} ? 'x-remote-user' : ''), '1 ',
    'union: server B inherits the http list only (X-Debug passes there, '
    . 'X-Remote-User does not)');

###############################################################################
# nginx -t: the warnings of this configuration, refused names

my $log = $t->read_file('error.log');
like($log, qr/\[warn\].*welby: server "a" in \S+:\d+ has protected locations and underscores_in_headers on/,
    'a warning names server a and underscores_in_headers on');
like($log, qr/\[warn\].*welby: server "b" in \S+:\d+ has protected locations and ignore_invalid_headers off/,
    'a warning names server b and ignore_invalid_headers off');
is(scalar(() = $log =~ /underscores_in_headers on:/g), 1,
    'the underscores warning is given once, not per location');

sub conf_test {
    my ($name, $server) = @_;
    $t->write_file_expand($name, <<"EOF");
%%TEST_GLOBALS%%
events {}
http {
    %%TEST_GLOBALS_HTTP%%
    welby_tls off;
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        $server
        location / { welby_token off; return 204; }
    }
}
EOF
    return $t->test_config($name);
}

for my $h (qw(Host host Content-Length content_length Transfer-Encoding)) {
    my ($code, $out) = conf_test("strip-$h.conf",
        "welby on; welby_strip_header X-A $h;");
    ok($code != 0 && $out =~ /\[emerg\] "\Q$h\E" cannot be stripped: nginx has already used it to read the request/,
        "nginx -t refuses welby_strip_header $h") or diag($out);
}

for my $h ('X-A X-B', 'X-A,X-B', 'X-A:', "X-\xc3\xa9") {
    (my $f = $h) =~ s/[^A-Za-z-]/_/g;
    my ($code, $out) = conf_test("bad-$f.conf",
        "welby on; welby_strip_header \"$h\";");
    ok($code != 0 && $out =~ /\[emerg\] invalid header name "\Q$h\E"/,
        "nginx -t refuses the header name \"$h\" (not a token)")
        or diag($out);
}

my ($code, $tout) = conf_test('unprotected.conf',
    'underscores_in_headers on; ignore_invalid_headers off;');
ok($code == 0 && $tout !~ /welby: server/,
    'no warning for a server without protected locations') or diag($tout);

($code, $tout) = conf_test('x-forwarded.conf',
    'welby on; welby_strip_header X-Forwarded-For x-real-ip User-Agent;');
is($code, 0, 'known headers other than Host and framing can be stripped')
    or diag($tout);

$t->done_testing();
