package Welby::Prom;

# A strict reader of the Prometheus text exposition format, version 0.0.4
# (own code), for the metrics tests: it reports every departure from the
# format, and from the naming rules the gateway keeps, as an error.
#
#   use Welby::Prom qw(prom_parse prom_value prom_sum);
#
#   my $p = prom_parse($body);
#   is_deeply($p->{errors}, [], 'the page parses');
#   my $v = prom_value($p, 'welby_requests_total',
#       decision => 'allow', reason => 'none');
#
# Checked: every line ends in LF and none is empty; comments are HELP or
# TYPE lines only; metric and label names are well formed, label names
# not reserved ("__"), label values quoted with only \\, \" and \n as
# escapes; a value is a float, +Inf, -Inf or NaN; at most one HELP and one
# TYPE per family, the TYPE before the family's first sample, a family's
# samples together (never resumed after another family); no series twice;
# counters named *_total, never negative or NaN; every family typed and
# with HELP; histograms only _bucket (with le), _sum and _count, buckets
# in increasing le with non-decreasing counts, a +Inf bucket equal to
# _count, and a _sum.

use strict;
use warnings;

use Exporter qw(import);
use Encode ();

our @EXPORT_OK = qw(prom_parse prom_value prom_sum prom_series);

my $NAME  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LNAME = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $FLOAT = qr/[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?/;
my %TYPES = map { $_ => 1 } qw(counter gauge histogram summary untyped);

sub prom_parse {
    my ($text) = @_;

    my %p = (families => {}, order => [], errors => []);
    my $err = sub { push @{ $p{errors} }, "line $_[0]: $_[1]" };

    my $copy = $text;
    unless (eval { Encode::decode('UTF-8', $copy, Encode::FB_CROAK); 1 }) {
        push @{ $p{errors} }, 'not UTF-8';
    }

    push @{ $p{errors} }, 'empty page' if $text eq '';
    push @{ $p{errors} }, 'the last line does not end in LF'
        if $text ne '' && $text !~ /\n\z/;

    my (%seen, %done, $current);
    my $n = 0;

    # the LF that ends the last line leaves an empty field behind it
    my @lines = split /\n/, $text, -1;
    pop @lines if @lines && $lines[-1] eq '';

    for my $line (@lines) {
        $n++;

        if ($line eq '') {
            $err->($n, 'empty line');
            next;
        }

        if ($line =~ /^#/) {
            if ($line =~ /^# HELP ($NAME) (.*)$/) {
                my ($name, $help) = ($1, $2);
                my $f = _family(\%p, $name);
                $err->($n, "second HELP for $name") if defined $f->{help};
                $err->($n, "HELP of $name has an invalid escape")
                    if $help =~ /\\(?![\\n])/;
                $f->{help} = $help;
                _enter(\%p, $err, $n, $name, \$current, \%done);
            } elsif ($line =~ /^# TYPE ($NAME) (\S+)$/) {
                my ($name, $type) = ($1, $2);
                my $f = _family(\%p, $name);
                $err->($n, "unknown type $type") unless $TYPES{$type};
                $err->($n, "second TYPE for $name") if defined $f->{type};
                $err->($n, "TYPE of $name after its samples")
                    if @{ $f->{samples} };
                $f->{type} = $type;
                _enter(\%p, $err, $n, $name, \$current, \%done);
            } else {
                $err->($n, "a comment other than HELP and TYPE: $line");
            }
            next;
        }

        my ($name, $rest) = $line =~ /^($NAME)(.*)$/;
        unless (defined $name) {
            $err->($n, "no metric name: $line");
            next;
        }

        my %labels;
        if ($rest =~ s/^\{//) {
            my $ok = 1;
            until ($rest =~ s/^\}//) {
                unless ($rest =~ s/^($LNAME)="//) {
                    $err->($n, "bad label in: $line");
                    $ok = 0;
                    last;
                }
                my $lname = $1;
                $err->($n, "reserved label name $lname") if $lname =~ /^__/;
                $err->($n, "label $lname twice") if exists $labels{$lname};

                my $value = '';
                my $closed = 0;
                while (length $rest) {
                    my $c = substr($rest, 0, 1, '');
                    if ($c eq '"') { $closed = 1; last }
                    if ($c eq '\\') {
                        my $e = substr($rest, 0, 1, '');
                        if ($e eq '\\') { $value .= '\\' }
                        elsif ($e eq '"') { $value .= '"' }
                        elsif ($e eq 'n') { $value .= "\n" }
                        else {
                            $err->($n, "invalid escape \\$e in label $lname");
                            $value .= $e;
                        }
                        next;
                    }
                    $value .= $c;
                }
                unless ($closed) {
                    $err->($n, "unterminated label value in: $line");
                    $ok = 0;
                    last;
                }
                $labels{$lname} = $value;

                next if $rest =~ s/^,(?=[a-zA-Z_])//;
                next if $rest =~ /^\}/;
                $err->($n, "bad label separator in: $line");
                $ok = 0;
                last;
            }
            next unless $ok;
        }

        my ($value, $ts) = $rest =~ /^ (\S+)(?: (-?\d+))?$/;
        unless (defined $value
            && $value =~ /^(?:$FLOAT|[+-]Inf|NaN)$/)
        {
            $err->($n, "bad value in: $line");
            next;
        }

        my $fname = _family_of(\%p, $name);
        my $f = _family(\%p, $fname);
        _enter(\%p, $err, $n, $fname, \$current, \%done);

        my $key = _series_key($name, \%labels);
        $err->($n, "series twice: $key") if $seen{$key}++;

        push @{ $f->{samples} }, {
            name => $name, labels => \%labels, value => _num($value),
            raw => $value, line => $n,
        };
    }

    for my $fname (@{ $p{order} }) {
        my $f = $p{families}{$fname};
        my $type = $f->{type};

        unless (defined $type) {
            push @{ $p{errors} }, "family $fname has no TYPE";
            next;
        }
        push @{ $p{errors} }, "family $fname has no HELP"
            unless defined $f->{help};

        if ($type eq 'counter') {
            push @{ $p{errors} }, "counter $fname is not named *_total"
                unless $fname =~ /_total$/;
            for my $s (@{ $f->{samples} }) {
                push @{ $p{errors} }, "counter sample $s->{name} is not "
                    . "its family's name" if $s->{name} ne $fname;
                push @{ $p{errors} }, "counter $s->{name} is $s->{raw}"
                    if $s->{raw} eq 'NaN' || $s->{value} < 0;
            }
        } elsif ($type eq 'histogram') {
            _histogram(\%p, $fname, $f);
        } elsif ($type eq 'gauge' || $type eq 'untyped') {
            for my $s (@{ $f->{samples} }) {
                push @{ $p{errors} }, "sample $s->{name} is not its "
                    . "family's name" if $s->{name} ne $fname;
            }
        }
    }

    return \%p;
}

# The family a sample belongs to: its own name, or for _bucket, _sum and
# _count the histogram (or summary) whose TYPE was given.
sub _family_of {
    my ($p, $name) = @_;
    if ($name =~ /^(.*)_(?:bucket|sum|count)$/) {
        my $base = $1;
        my $f = $p->{families}{$base};
        return $base if $f && defined $f->{type}
            && ($f->{type} eq 'histogram' || $f->{type} eq 'summary');
    }
    return $name;
}

sub _family {
    my ($p, $name) = @_;
    unless ($p->{families}{$name}) {
        $p->{families}{$name} = { samples => [] };
        push @{ $p->{order} }, $name;
    }
    return $p->{families}{$name};
}

sub _enter {
    my ($p, $err, $n, $name, $current, $done) = @_;
    return if defined $$current && $$current eq $name;
    $err->($n, "family $name resumed after another one") if $done->{$name};
    $done->{$$current} = 1 if defined $$current;
    $$current = $name;
}

sub _series_key {
    my ($name, $labels) = @_;
    return $name . '{' . join(',', map { "$_=\"$labels->{$_}\"" }
        sort keys %$labels) . '}';
}

sub _num {
    my ($v) = @_;
    return 9**9**9 if $v eq '+Inf';
    return -9**9**9 if $v eq '-Inf';
    return 0 if $v eq 'NaN';
    return 0 + $v;
}

sub _histogram {
    my ($p, $fname, $f) = @_;
    my (%buckets, %sum, %count);

    for my $s (@{ $f->{samples} }) {
        my %l = %{ $s->{labels} };
        if ($s->{name} eq "${fname}_bucket") {
            my $le = delete $l{le};
            unless (defined $le
                && $le =~ /^(?:$FLOAT|\+Inf)$/)
            {
                push @{ $p->{errors} }, "bucket of $fname without a valid le";
                next;
            }
            push @{ $buckets{ _series_key('', \%l) } }, [$le, $s->{value}];
        } elsif ($s->{name} eq "${fname}_sum") {
            $sum{ _series_key('', \%l) } = $s->{value};
        } elsif ($s->{name} eq "${fname}_count") {
            $count{ _series_key('', \%l) } = $s->{value};
        } else {
            push @{ $p->{errors} }, "histogram $fname has a sample "
                . "$s->{name}";
        }
    }

    push @{ $p->{errors} }, "histogram $fname has no buckets" unless %buckets;

    for my $k (sort keys %buckets) {
        my @b = @{ $buckets{$k} };
        for my $i (1 .. $#b) {
            push @{ $p->{errors} }, "histogram $fname$k: le $b[$i][0] not "
                . "above $b[$i-1][0]" unless _num($b[$i][0]) > _num($b[$i-1][0]);
            push @{ $p->{errors} }, "histogram $fname$k: bucket le=$b[$i][0] "
                . "below the one before it" if $b[$i][1] < $b[$i-1][1];
        }
        if ($b[-1][0] ne '+Inf') {
            push @{ $p->{errors} }, "histogram $fname$k has no +Inf bucket";
        } elsif (!defined $count{$k} || $count{$k} != $b[-1][1]) {
            push @{ $p->{errors} }, "histogram $fname$k: +Inf "
                . "$b[-1][1] is not _count " . ($count{$k} // 'missing');
        }
        push @{ $p->{errors} }, "histogram $fname$k has no _sum"
            unless defined $sum{$k};
    }
}

# The value of the one series of $name with exactly these labels, or undef.
sub prom_value {
    my ($p, $name, %labels) = @_;
    my $key = _series_key($name, \%labels);
    for my $f (values %{ $p->{families} }) {
        for my $s (@{ $f->{samples} }) {
            return $s->{value}
                if _series_key($s->{name}, $s->{labels}) eq $key;
        }
    }
    return undef;
}

# Every series of $name as { label text => value }, label text as
# 'a="x",b="y"' in sorted order.
sub prom_series {
    my ($p, $name) = @_;
    my %out;
    for my $f (values %{ $p->{families} }) {
        for my $s (@{ $f->{samples} }) {
            next unless $s->{name} eq $name;
            my $l = $s->{labels};
            $out{ join ',', map { "$_=\"$l->{$_}\"" } sort keys %$l }
                = $s->{value};
        }
    }
    return \%out;
}

# The sum over every series of $name.
sub prom_sum {
    my ($p, $name) = @_;
    my $sum = 0;
    $sum += $_ for values %{ prom_series($p, $name) };
    return $sum;
}

1;
