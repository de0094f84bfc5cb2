"""The language stage: offline, ISO 639-1, and honest about what it cannot tell."""

from __future__ import annotations

import pytest

from newsflow.domain.language import UNDETERMINED, detect, detect_article

SAMPLES = {
    "en": "The government announced on Thursday that the new railway line will open next spring after years of delays.",
    "de": "Die Regierung kündigte am Donnerstag an, dass die neue Bahnstrecke nach jahrelangen Verzögerungen im "
    "nächsten Frühjahr eröffnet wird.",
    "fr": "Le gouvernement a annoncé jeudi que la nouvelle ligne de chemin de fer ouvrira au printemps prochain "
    "après des années de retard.",
    "es": "El gobierno anunció el jueves que la nueva línea de ferrocarril se abrirá la próxima primavera tras "
    "años de retrasos.",
    "it": "Il governo ha annunciato giovedì che la nuova linea ferroviaria aprirà la prossima primavera dopo anni "
    "di ritardi.",
    "pt": "O governo anunciou na quinta-feira que a nova linha ferroviária será inaugurada na próxima primavera, "
    "depois de anos de atrasos.",
    "nl": "De regering maakte donderdag bekend dat de nieuwe spoorlijn na jaren van vertraging volgend voorjaar "
    "wordt geopend.",
    "pl": "Rząd ogłosił w czwartek, że nowa linia kolejowa zostanie otwarta wiosną przyszłego roku po latach opóźnień.",
    "ru": "Правительство объявило в четверг, что новая железнодорожная линия откроется следующей весной после "
    "многолетних задержек.",
    "el": "Η κυβέρνηση ανακοίνωσε την Πέμπτη ότι η νέα σιδηροδρομική γραμμή θα ανοίξει την επόμενη άνοιξη μετά "
    "από χρόνια καθυστερήσεων.",
    "ar": "أعلنت الحكومة يوم الخميس أن خط السكك الحديدية الجديد سيفتتح في الربيع المقبل بعد سنوات من التأخير.",
    "zh": "政府星期四宣布，这条新铁路线在拖延多年之后将于明年春天开通。",
    "ja": "政府は木曜日、長年の遅れを経て新しい鉄道路線が来年の春に開業すると発表した。",
    "tr": "Hükümet perşembe günü yeni demiryolu hattının yıllarca süren gecikmelerin ardından önümüzdeki "
    "baharda açılacağını duyurdu.",
}


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_detects_the_language_of_a_news_sentence(code: str) -> None:
    result = detect(SAMPLES[code])
    assert result.code == code
    assert 0.6 <= result.confidence <= 1.0


@pytest.mark.parametrize("text", ["", "   ", "2022-09-15 10:30", "https://example.invalid/a/b?c=d", "OK", "🙂🙂🙂"])
def test_too_little_text_is_undetermined(text: str) -> None:
    assert detect(text).code == UNDETERMINED


def test_title_and_body_are_read_together() -> None:
    assert detect_article("Bahnstrecke eröffnet", SAMPLES["de"]).code == "de"
    assert detect_article(None, "Line one\n\n" + SAMPLES["en"]).code == "en"
